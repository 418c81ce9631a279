#include "cpu/gemm.h"

#include <cblas.h>

#include <climits>
#include <cstring>
#include <string>

#include "core/error.h"

namespace pixelllm::cpu {

using core::ErrorCode;

namespace {

int to_blas_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    core::fail(ErrorCode::LimitExceeded, std::string("gemm: ") + what + " = " + std::to_string(v) +
                                             " does not fit the BLAS integer type");
  return static_cast<int>(v);
}

}  // namespace

void blas_set_threads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }

int blas_threads() { return openblas_get_num_threads(); }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              to_blas_int(m, "m"), to_blas_int(n, "n"), to_blas_int(k, "k"), alpha, a, to_blas_int(lda, "lda"), b,
              to_blas_int(ldb, "ldb"), beta, c, to_blas_int(ldc, "ldc"));
}

void sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                   float beta, float* c, int64_t ldc, int64_t stride_c) {
  for (int64_t i = 0; i < batch; ++i)
    sgemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
          ldc);
}

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            bool accumulate, int64_t ldx, int64_t ldy) {
  if (ldx == 0) ldx = in;
  if (ldy == 0) ldy = out;
  if (rows == 0 || out == 0) return;
  float beta = accumulate ? 1.f : 0.f;
  if (bias) {
    for (int64_t r = 0; r < rows; ++r) {
      float* yr = y + r * ldy;
      if (accumulate) {
        for (int64_t j = 0; j < out; ++j) yr[j] += bias[j];
      } else {
        std::memcpy(yr, bias, static_cast<size_t>(out) * sizeof(float));
      }
    }
    beta = 1.f;
  }
  if (in == 0) {
    if (!bias && !accumulate)
      for (int64_t r = 0; r < rows; ++r) std::memset(y + r * ldy, 0, static_cast<size_t>(out) * sizeof(float));
    return;
  }
  if (rows == 1) {
    // One row (a decode step): a matrix-vector product is cheaper than a 1-row GEMM. Zero y first when it is
    // not read, so uninitialised NaN bits cannot survive a beta = 0 scaling.
    if (beta == 0.f) std::memset(y, 0, static_cast<size_t>(out) * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, to_blas_int(out, "out"), to_blas_int(in, "in"), 1.f, weight,
                to_blas_int(in, "in"), x, 1, beta, y, 1);
    return;
  }
  sgemm(false, true, rows, out, in, 1.f, x, ldx, weight, in, beta, y, ldy);
}

}  // namespace pixelllm::cpu
