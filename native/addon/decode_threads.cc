#include "addon/decode_threads.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

namespace pixelllm::addon {

namespace {

struct DecodeThreads {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  int threads = 0, idle = 0;

  void loop() {
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
