// A fixed pool of worker threads with a blocking `parallel_for`.
//
// How kernels and matrix products share the cores -- the policy every caller follows:
//  * One thread count N per loaded CPU backend (LoadOptions.threads, 0 = default_thread_count(): the CPUs this
//    process may run on, clamped to [1, 16]). cpu::blas_set_threads(N) (called by each CPU backend at load; a
//    process-wide setting, the last backend loaded wins) sets OpenBLAS to one thread and returns the gemm module's
//    pool of N threads (native/cpu/gemm.cc; N - 1 workers, the thread calling parallel_for is the N-th). The backend
//    runs its kernels (attention, norms, activations, resize, ...) on that same pool, so one set of workers serves
//    both: with a kernel pool of its own beside the GEMM pool, each pool's idle worker polled while the other
//    computed (three threads on two cores; ~5 % of a demo encode).
//  * Matrix products never use OpenBLAS's own threads: a product above ~4 MFLOP, or a one-row product with
//    >= 2 MiB of weight (gemm.h: kSplitFlops, kSplitWeightBytes; also the packed products of cpu/packed_linear.h),
//    is split into slices over the pool; smaller ones run inline on the calling thread. No OpenBLAS worker
//    exists; our workers poll ~100 us between jobs (below), then sleep.
//  * GEMMs (cpu::linear / cpu::sgemm) are called only from the request's thread, never from inside a
//    parallel_for body (there the nested rule below would run the whole product on that one worker) -- except on
//    purpose through run_pair (below), which wants exactly that: two whole jobs, one per thread. A request's
//    thread runs either a kernel parallel_for or a GEMM at a time and the workers poll for the next job for
//    ~100 us (yielding the core between checks; PIXELLLM_SPIN_US) and then sleep on a condition variable, so one
//    request keeps at most N threads computing and an idle process uses no CPU.
//  * Concurrent requests on one backend serialise their compute on the backend's own mutex (runtime/cpu:
//    Shared::compute, held around whole component forwards and decode steps); parallel_for also serialises its
//    callers (compute_mutex()). Separately loaded models with the same thread count share the pool, so their
//    parallel work interleaves job by job; a model loaded with another count gets a pool of its own for its
//    kernels (the products follow the last blas_set_threads).
//  * A parallel_for issued from a thread that is already doing pool work -- a worker of any pool, or a caller
//    inside its own parallel_for -- runs serially on that thread.
#pragma once

#include <atomic>
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
  std::atomic<uint64_t> published_{0};  // generation_, readable without mu_ by polling workers
  int sleepers_ = 0;                     // workers blocked on wake_, guarded by mu_
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

// Two independent jobs of estimated costs cost_a and cost_b (any unit), each of which may use the pool itself (its
// parallel_for, its products). On a pool of exactly two threads where neither job is more than kPairShare of the
// total, they run side by side, a thread each, everything inside them serial on that thread (the nested rule above):
// no hand-offs or end-of-job waits inside them, where each job's own parallel_for on two threads lost ~10 % (the demo
// model's two image encoders: 8.66 -> 8.36 ms per image alternated, bench/README.md). Otherwise one after the other, each on the
// whole pool. Each job's output does not depend on which way it ran (every kernel gives the same bits on any thread
// count). An exception from either is rethrown (the other job may then not have run).
constexpr double kPairShare = 0.55;
void run_pair(ThreadPool* pool, double cost_a, double cost_b, const std::function<void()>& a,
              const std::function<void()>& b);

}  // namespace pixelllm::core
