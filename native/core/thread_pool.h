// A fixed pool of worker threads with a blocking `parallel_for`.
//
// Sharing the cores with OpenBLAS (no oversubscription) -- the policy every caller follows:
//  * One thread count N per Pipeline (LoadOptions.threads, 0 = default_thread_count(): the CPUs this process may
//    run on, clamped to [1, 16]). The pool has N-1 workers; the thread calling parallel_for is the N-th.
//  * cpu::blas_set_threads(N) gives OpenBLAS the same N (a process-wide setting).
//  * GEMMs (cpu::linear / cpu::sgemm) are called only from the request thread, never from inside a parallel_for
//    body; while OpenBLAS runs, the pool's workers sleep on a condition variable (they never spin), and while a
//    parallel_for runs, no GEMM is in flight. So at any moment at most N threads compute.
//  * Kernels that need small matrix products inside parallel work (attention) use their own loops, not BLAS.
//  * Concurrent requests on one Pipeline serialise their compute on one mutex per pool (parallel_for itself
//    serialises callers; the runtime holds the same lock around whole GEMM+kernel sequences of a component).
//  * A parallel_for issued from inside a worker (nested) runs serially on that worker.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pixelllm::core {

// CPUs available to this process (sched affinity), clamped to [1, 16].
int default_thread_count();

class ThreadPool {
 public:
  // `threads` = total threads including the caller; 0 means default_thread_count(). Clamped to [1, 64].
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const noexcept { return threads_; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), each at least `grain` long (except the last),
  // on all threads; returns when every chunk is done. The first exception thrown by fn is rethrown here (the
  // remaining chunks are skipped). Callers from different threads are serialised.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) { parallel_for(n, 1, fn); }

  // Mutex that serialises compute on this pool (see the policy above); parallel_for takes it internally.
  std::mutex& compute_mutex() noexcept { return compute_mutex_; }

 private:
  void worker_loop();
  void run_chunks();

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex compute_mutex_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  // current job
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  int64_t num_chunks_ = 0;
  int64_t next_chunk_ = 0;   // guarded by mu_
  int64_t chunks_done_ = 0;  // guarded by mu_
  int active_workers_ = 0;   // workers inside run_chunks, guarded by mu_
  std::exception_ptr error_;
};

// Runs fn over [0, n) on `pool` when given, serially otherwise (kernels accept a null pool).
void parallel_for(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pixelllm::core
