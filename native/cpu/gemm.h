// Matrix products on OpenBLAS (cblas, row-major). Call these only from the request thread, never inside a
// ThreadPool::parallel_for body (see core/thread_pool.h for how BLAS and the pool share the cores).
#pragma once

#include <cstdint>
#include <memory>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// GEMM thread count (process-wide; 0 = core::default_thread_count()). Set it once per process/pipeline load. N > 1 makes OpenBLAS
// single-threaded and splits every large enough product over this module's own N-thread pool (the caller is one
// of the N); its workers poll ~100 us for the next product, then sleep (core/thread_pool.h), so with the policy of
// core/thread_pool.h (GEMMs only from the request thread, never inside a parallel_for) at most N threads compute.
// Products under ~4 MFLOP run on the calling thread, except one-row products (a decode step) with >= 2 MiB of
// weight, which are split too (linear() below). Without a call, OpenBLAS
// threads itself as configured by its environment.
// Returns the pool the products now run on (a 1-thread pool, no workers, when threads == 1): callers run their
// kernels' parallel_for on it too (the CPU backend, the bench), so one set of N - 1 workers serves GEMMs and kernels.
// With a kernel pool of its own beside this one, each pool's idle worker polled while the other pool computed: three
// threads on two cores, ~10 % of a demo encode's samples in sched_yield (perf); demo encode 9.2-9.3 -> 8.75 ms with
// the pool shared (bench exe, 300 encodes, medians).
std::shared_ptr<core::ThreadPool> blas_set_threads(int threads);
int blas_threads();
// Splitting policy shared by every product on the GEMM pool: split when the product has at least this many flops,
// or (one row / decode steps: memory-bound) at least this many bytes of weight (a 768 x 768 weight is 2.25 MiB,
// ~90 us on one thread). Smaller products run on the calling thread: a hand-off costs more than it saves.
// 1 MFLOP (4 before session 7): the demo decoder's batched steps (8 rows: qkv 3.1, attention output 1.0 MFLOP)
// had run those products on one core while the worker polled; 8 concurrent API captions, alternated runs:
// 47.6-67.0 -> 42.3-46.5 ms. One-row steps (< 1 MFLOP per product) are unchanged.
constexpr double kSplitFlops = 1.0e6;
constexpr double kSplitWeightBytes = 2.0 * 1024 * 1024;

// The GEMM pool (null without blas_set_threads(N > 1)), for other products that follow the same policy
// (cpu/packed_linear.h).
std::shared_ptr<core::ThreadPool> blas_pool();

// C = alpha * op(A) @ op(B) + beta * C, row-major; op(A) is (m,k), op(B) is (k,n). LIMIT_EXCEEDED when a size
// does not fit cblas' int.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// `batch` independent sgemm calls with element strides between consecutive A, B and C matrices
// (stride 0 reuses the same matrix, e.g. shared weights).
void sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                   float beta, float* c, int64_t ldc, int64_t stride_c);

// Starts the output y (rows x out, row stride ldy) of a linear layer: y = bias, or y += bias when accumulating; with
// zero_fill, y = 0 when there is neither. Returns true when y then holds what the product is to be added to.
bool linear_output_start(float* y, int64_t rows, int64_t out, int64_t ldy, const float* bias, bool accumulate,
                         bool zero_fill);

// Linear layer in torch layout: y (rows, out) = x (rows, in) @ W^T + bias, with W (out, in) row-major as stored
// in the weights and bias (out) or null. accumulate = true adds to y instead (residual fusion).
// Row strides of x and y may exceed in/out (ldx, ldy; 0 means dense).
void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            bool accumulate = false, int64_t ldx = 0, int64_t ldy = 0);

}  // namespace pixelllm::cpu
