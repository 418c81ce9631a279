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

int DecodeThreadNiceStep() {
  const char* v = std::getenv("PIXELLLM_DECODE_THREAD_NICE");
  if (v == nullptr || *v == '\0') return kDecodeThreadNice;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end == '\0' && n >= 0 && n <= 19) ? static_cast<int>(n) : kDecodeThreadNice;
}

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
