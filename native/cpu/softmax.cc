#include "cpu/softmax.h"

#include <cmath>
#include <limits>

#include "core/thread_pool.h"
#include "cpu/vec.h"

namespace pixelllm::cpu {

namespace {

void softmax_row(float* x, int64_t cols, float scale) {
  if (scale != 1.0f) vec::scale(x, scale, cols);
  float m = vec::max(x, cols);
  if (m == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < cols; ++i) x[i] = 0.f;
    return;
  }
  float s = 0.f;
  for (int64_t i = 0; i < cols; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  float inv = 1.0f / s;
  vec::scale(x, inv, cols);
}

}  // namespace

void softmax(float* x, int64_t rows, int64_t cols, float scale, core::ThreadPool* pool) {
  if (cols <= 0) return;
  core::parallel_for(pool, rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(x + r * cols, cols, scale);
  });
}

void log_softmax(const float* x, int64_t cols, float* out) {
  if (cols <= 0) return;
  float m = vec::max(x, cols);
  if (m == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < cols; ++i) out[i] = -std::numeric_limits<float>::infinity();
    return;
  }
  double s = 0.0;
  for (int64_t i = 0; i < cols; ++i) s += std::exp(static_cast<double>(x[i] - m));
  float lse = m + static_cast<float>(std::log(s));
  for (int64_t i = 0; i < cols; ++i) out[i] = x[i] - lse;
}

}  // namespace pixelllm::cpu
