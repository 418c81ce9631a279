#include "cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemv.h"

namespace pixelllm::cpu {

using core::ErrorCode;

namespace {

int to_blas_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    core::fail(ErrorCode::LimitExceeded, std::string("gemm: ") + what + " = " + std::to_string(v) +
                                             " does not fit the BLAS integer type");
  return static_cast<int>(v);
}

// GEMM threading (see gemm.h): after blas_set_threads(N > 1), OpenBLAS runs single-threaded and the products are
// split over this module's own pool of N threads (output columns, or rows when there are few columns), one
// single-threaded OpenBLAS call per slice. OpenBLAS's own workers never exist (they busy-wait for
// milliseconds after every call and fought the kernel pool for the cores; ours poll ~100 us, thread_pool.cc), a
// decode step's small products run inline, and its one-row products of >= 2 MiB of weight run our GEMV
// (cpu/gemv.h) split over the pool (OpenBLAS threads every sgemv above 9216 elements: measured 13 ms vs 0.12 ms
// single-threaded for 768x2304 on a loaded 2-core VM).
std::mutex g_mu;
std::shared_ptr<core::ThreadPool> g_pool;  // null: OpenBLAS threading as configured (no blas_set_threads call)
std::map<int, std::weak_ptr<core::ThreadPool>> g_pools;  // every pool made, by thread count, while someone holds it
int g_threads = 0;
// Up to this many rows a linear layer runs as matrix-vector products over cache-sized weight blocks.
constexpr int64_t kGemvRows = 16;

void raw_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
               int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

std::shared_ptr<core::ThreadPool> blas_set_threads(int threads) {
  threads = threads <= 0 ? core::default_thread_count() : threads;
  std::lock_guard<std::mutex> lock(g_mu);
  openblas_set_num_threads(1);
  if (threads != g_threads) {
    // A pool of this size that a backend still holds is taken back (its kernels already run on it), so switching
    // the count and back does not leave that backend with two pools. In-flight users keep the old one.
    g_pool = nullptr;
    if (threads > 1) {
      std::weak_ptr<core::ThreadPool>& kept = g_pools[threads];
      g_pool = kept.lock();
      if (!g_pool) kept = g_pool = std::make_shared<core::ThreadPool>(threads);
    }
    g_threads = threads;
  }
  return g_pool ? g_pool : std::make_shared<core::ThreadPool>(1);
}

std::shared_ptr<core::ThreadPool> blas_pool() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_pool;
}

int blas_threads() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_threads > 0 ? g_threads : openblas_get_num_threads();
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  const int im = to_blas_int(m, "m"), in = to_blas_int(n, "n"), ik = to_blas_int(k, "k");
  const int ilda = to_blas_int(lda, "lda"), ildb = to_blas_int(ldb, "ldb"), ildc = to_blas_int(ldc, "ldc");
  std::shared_ptr<core::ThreadPool> pool = blas_pool();
  if (!pool || 2.0 * double(m) * double(n) * double(k) < kSplitFlops) {
    raw_sgemm(trans_a, trans_b, im, in, ik, alpha, a, ilda, b, ildb, beta, c, ildc);
    return;
  }
  const int64_t parts = pool->size();
  if (n >= 32 * parts) {  // column slices (multiples of 16): B's rows (trans_b) or columns, C's columns
    const int64_t chunk = ((n + parts - 1) / parts + 15) / 16 * 16;
    pool->parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n0 = p * chunk, n1 = std::min(n, n0 + chunk);
        if (n0 >= n1) continue;
        raw_sgemm(trans_a, trans_b, im, int(n1 - n0), ik, alpha, a, ilda, trans_b ? b + n0 * ldb : b + n0, ildb,
                  beta, c + n0, ildc);
      }
    });
  } else {  // row slices: A's rows (columns when trans_a), C's rows
    const int64_t chunk = (m + parts - 1) / parts;
    pool->parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t m0 = p * chunk, m1 = std::min(m, m0 + chunk);
        if (m0 >= m1) continue;
        raw_sgemm(trans_a, trans_b, int(m1 - m0), in, ik, alpha, trans_a ? a + m0 : a + m0 * lda, ilda, b, ildb,
                  beta, c + m0 * ldc, ildc);
      }
    });
  }
}

void sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                   float beta, float* c, int64_t ldc, int64_t stride_c) {
  for (int64_t i = 0; i < batch; ++i)
    sgemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
          ldc);
}

bool linear_output_start(float* y, int64_t rows, int64_t out, int64_t ldy, const float* bias, bool accumulate,
                         bool zero_fill) {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * ldy;
    if (bias && accumulate) {
      for (int64_t j = 0; j < out; ++j) yr[j] += bias[j];
    } else if (bias) {
      std::memcpy(yr, bias, static_cast<size_t>(out) * sizeof(float));
    } else if (!accumulate && zero_fill) {
      std::memset(yr, 0, static_cast<size_t>(out) * sizeof(float));
    }
  }
  return bias != nullptr || accumulate || zero_fill;
}

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            bool accumulate, int64_t ldx, int64_t ldy) {
  if (ldx == 0) ldx = in;
  if (ldy == 0) ldy = out;
  if (rows == 0 || out == 0) return;
  // Without bias or accumulation, beta = 0 lets the product overwrite y (no zero fill for the large GEMMs).
  float beta = linear_output_start(y, rows, out, ldy, bias, accumulate, /*zero_fill=*/in == 0) ? 1.f : 0.f;
  if (in == 0) return;
  if (rows <= kGemvRows) {
    // A decode step (one row, or the few rows of batched requests / beams): memory-bound. One row: cpu/gemv.h.
    // Several rows: one small GEMM per cache-sized block of weight rows, so the weight is streamed from memory
    // once and packed block by block while it is in cache (one GEMM over the whole weight packs -- copies -- all
    // of it first: an 8-row batch of the official decoder took 67 ms that way in the addon, 45 ms with per-block
    // sgemv per row; per-block GEMMs give 113-136 tokens/s in the bench's `rows 8 40` vs 82-98 for per-block
    // sgemv, alternated runs on the loaded 2-core VM). Zero y first when it is not read, so uninitialised NaN bits cannot
    // survive a beta = 0 scaling.
    if (beta == 0.f)
      for (int64_t r = 0; r < rows; ++r) std::memset(y + r * ldy, 0, static_cast<size_t>(out) * sizeof(float));
    const int iin = to_blas_int(in, "in");
    to_blas_int(out, "out");
    std::shared_ptr<core::ThreadPool> pool = blas_pool();
    const int64_t parts = pool ? pool->size() : 1;
    if (rows == 1) {
      // One row: our streaming GEMV (cpu/gemv.h). Weights of >= 2 MiB are split over the pool in ~4 chunks per
      // thread of whole 16-row blocks; the calling thread starts at once and takes chunks until none is left, so
      // a worker that wakes late (a busy core) costs the wake-up call and at most one chunk of waiting. (The text
      // decoders use packed weights instead, cpu/packed_linear.h.)
      auto rows_of = [&](int64_t o0, int64_t o1) { gemv_accumulate(weight + o0 * in, in, o1 - o0, x, y + o0); };
      if (parts == 1 || 4.0 * double(out) * double(in) < kSplitWeightBytes) {
        rows_of(0, out);
        return;
      }
      const int64_t blocks = (out + 15) / 16;
      pool->parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) { rows_of(b0 * 16, std::min(out, b1 * 16)); });
      return;
    }
    // Several rows: output rows per block ~256 KB of weight (an L2 share), a multiple of 16.
    const int64_t block = std::max<int64_t>(16, (int64_t(256) * 1024 / (4 * in)) / 16 * 16);
    auto gemm_rows = [&](int64_t o0, int64_t o1) {
      for (int64_t b0 = o0; b0 < o1; b0 += block) {
        const int64_t b1 = std::min(o1, b0 + block);
        raw_sgemm(false, true, int(rows), int(b1 - b0), iin, 1.f, x, to_blas_int(ldx, "ldx"), weight + b0 * in, iin,
                  beta, y + b0, to_blas_int(ldy, "ldy"));
      }
    };
    if (parts == 1 || 2.0 * double(out) * double(in) < kSplitFlops || out < 64 * parts) {
      gemm_rows(0, out);
      return;
    }
    // Output rows split over the pool: each thread streams its own slice of the weight.
    const int64_t chunk = ((out + parts - 1) / parts + 15) / 16 * 16;
    pool->parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t o0 = p * chunk, o1 = std::min(out, o0 + chunk);
        if (o0 < o1) gemm_rows(o0, o1);
      }
    });
    return;
  }
  sgemm(false, true, rows, out, in, 1.f, x, ldx, weight, in, beta, y, ldy);
}

}  // namespace pixelllm::cpu
