#include "cpu/norm.h"

#include <cmath>

#include "core/thread_pool.h"
#include "cpu/simd.h"
#include "cpu/vec.h"

namespace pixelllm::cpu {

namespace {

constexpr int64_t kRowGrain = 16;

PIXELLLM_SIMD_INLINE void normalise_row(const float* x, int64_t dim, const float* gamma, const float* beta, float eps, float* y) {
  // Two passes (mean, then centred variance) for accuracy.
  float mean = vec::sum(x, dim) / static_cast<float>(dim);
  float var = vec::sum_sq_dev(x, dim, mean) / static_cast<float>(dim);
  float inv = 1.0f / std::sqrt(var + eps);
  if (gamma && beta) {
    for (int64_t i = 0; i < dim; ++i) y[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
  } else {
    for (int64_t i = 0; i < dim; ++i) {
      float v = (x[i] - mean) * inv;
      if (gamma) v *= gamma[i];
      if (beta) v += beta[i];
      y[i] = v;
    }
  }
}

// Rows [r0, r1) of layer_norm / add_layer_norm (residual += delta first when delta is given). Compiled per ISA
// (simd.h) so the inlined vec:: reductions and the scaling loop use AVX-512 / AVX2 in the x86-64-v2 build.
PIXELLLM_SIMD_CLONES void norm_rows(float* residual, const float* x, const float* delta, int64_t r0, int64_t r1,
                                    int64_t dim, const float* gamma, const float* beta, float eps, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    if (delta) {
      float* res = residual + r * dim;
      const float* d = delta + r * dim;
      for (int64_t i = 0; i < dim; ++i) res[i] += d[i];
      xr = res;
    }
    normalise_row(xr, dim, gamma, beta, eps, y + r * dim);
  }
}

}  // namespace

void layer_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps, float* y,
                core::ThreadPool* pool) {
  if (dim <= 0) return;
  core::parallel_for(pool, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    norm_rows(nullptr, x, nullptr, r0, r1, dim, gamma, beta, eps, y);
  });
}

void add_layer_norm(float* residual, const float* delta, int64_t rows, int64_t dim, const float* gamma,
                    const float* beta, float eps, float* y, core::ThreadPool* pool) {
  if (dim <= 0) return;
  core::parallel_for(pool, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    norm_rows(residual, residual, delta, r0, r1, dim, gamma, beta, eps, y);
  });
}

void rms_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
              core::ThreadPool* pool) {
  if (dim <= 0) return;
  core::parallel_for(pool, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float ms = vec::dot(xr, xr, dim) / static_cast<float>(dim);
      float inv = 1.0f / std::sqrt(ms + eps);
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * (gamma ? gamma[i] : 1.0f);
    }
  });
}

}  // namespace pixelllm::cpu
