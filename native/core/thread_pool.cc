#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#include "core/env.h"

namespace pixelllm::core {

namespace {
thread_local bool t_in_pool_work = false;

// How long a worker keeps polling for the next job after finishing one, and a caller for its job's last chunk,
// before sleeping on the condition variable. Waking a sleeping thread costs ~40 us on the CI VM (futex + an idle
// vCPU's wake-up: an 8-chunk parallel_for of ~1 us chunks took 44-54 us), and a decode step issues ~30 products
// a few tens of microseconds apart, so without the poll every product paid that wake-up twice. The poll yields
// the core between checks (sched_yield), so a runnable thread on that core -- the event loop, another request --
// is not kept waiting. PIXELLLM_SPIN_US overrides it (0: always sleep at once).
int spin_us() {
  static const int us = env_int("PIXELLLM_SPIN_US", 100, 0, 100000);
  return us;
}

// Polls `ready` until it returns true or spin_us() elapse; true when it became ready.
template <class F>
bool poll_for(F&& ready) {
  const int us = spin_us();
  if (us == 0) return false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if ((i & 15) == 15) {
      if (std::chrono::steady_clock::now() >= until) return false;
      sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}
}  // namespace

int default_thread_count() {
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(n, 1, 16);
}

ThreadPool::ThreadPool(int threads) {
  threads_ = std::clamp(threads <= 0 ? default_thread_count() : threads, 1, 64);
  workers_.reserve(threads_ - 1);
  for (int i = 0; i + 1 < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    int64_t c;
    bool skip;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_chunk_ >= num_chunks_) return;
      c = next_chunk_++;
      skip = static_cast<bool>(error_);  // after a failure the remaining chunks are only counted
    }
    int64_t begin = c * chunk_;
    int64_t end = std::min(n_, begin + chunk_);
    if (!skip) {
      try {
        (*fn_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (++chunks_done_ == num_chunks_) done_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  t_in_pool_work = true;
  uint64_t seen = 0;
  for (;;) {
    poll_for([&] { return published_.load(std::memory_order_acquire) != seen; });
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleepers_;
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      --sleepers_;
      if (stop_) return;
      seen = generation_;
      ++active_workers_;
    }
    run_chunks();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_workers_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (threads_ == 1 || t_in_pool_work || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> serial(compute_mutex_);
  // About 4 chunks per thread for load balance, never smaller than grain.
  int64_t chunk = std::max(grain, (n + 4 * threads_ - 1) / (4 * threads_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    num_chunks_ = (n + chunk - 1) / chunk;
    next_chunk_ = 0;
    chunks_done_ = 0;
    error_ = nullptr;
    ++generation_;
    published_.store(generation_, std::memory_order_release);
    if (sleepers_ > 0) wake_.notify_all();  // polling workers see published_ without a wake-up
  }
  t_in_pool_work = true;
  run_chunks();
  t_in_pool_work = false;
  std::exception_ptr err;
  // Wait until every chunk is finished and no worker still touches this job's state (poll first, then sleep).
  auto finished = [&] { return chunks_done_ == num_chunks_ && active_workers_ == 0; };
  poll_for([&] {
    std::lock_guard<std::mutex> lock(mu_);
    return finished();
  });
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, finished);
    fn_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void parallel_for(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) {
    pool->parallel_for(n, grain, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

void run_pair(ThreadPool* pool, double cost_a, double cost_b, const std::function<void()>& a,
              const std::function<void()>& b) {
  const double total = cost_a + cost_b;
  const bool side = pool && pool->size() == 2 && !t_in_pool_work && total > 0 &&
                    std::max(cost_a, cost_b) <= kPairShare * total;
  if (!side) {
    a();
    b();
    return;
  }
  pool->parallel_for(2, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) (i == 0 ? a : b)();
  });
}

}  // namespace pixelllm::core
