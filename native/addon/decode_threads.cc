#include "addon/decode_threads.h"

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pthread.h>

#include <cerrno>
#endif

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "core/env.h"

namespace pixelllm::addon {

namespace {

// Names the calling thread "pixelllm-decode" (ps -L, /proc/<pid>/task/*/comm) and lowers its priority by `step`
// nice levels (Linux: nice is per thread). Best effort: a failure leaves the thread at its creator's priority.
void SetUpDecodeThread(int step) {
#ifdef __linux__
  pthread_setname_np(pthread_self(), "pixelllm-decode");
  if (step <= 0) return;
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, tid);
  if (errno != 0) return;
  setpriority(PRIO_PROCESS, tid, std::min(19, now + step));
#else
  (void)step;
#endif
}

struct DecodeThreads {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  int threads = 0, idle = 0;

  void loop() {
    SetUpDecodeThread(DecodeThreadNiceStep());
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      ++idle;
      cv.wait(lock, [&] { return !tasks.empty(); });
      --idle;
      std::function<void()> task = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
};

// Never destroyed: detached threads may still wait on it while the process exits.
DecodeThreads& pool() {
  static DecodeThreads* p = new DecodeThreads();
  return *p;
}

}  // namespace

int DecodeThreadNiceStep() { return core::env_int("PIXELLLM_DECODE_THREAD_NICE", kDecodeThreadNice, 0, 19); }

void RunOnDecodeThread(std::function<void()> task) {
  DecodeThreads& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.tasks.push_back(std::move(task));
  if (p.idle < static_cast<int>(p.tasks.size()) && p.threads < kMaxDecodeThreads) {
    ++p.threads;
    std::thread([&p] { p.loop(); }).detach();
  }
  p.cv.notify_one();
}

}  // namespace pixelllm::addon
