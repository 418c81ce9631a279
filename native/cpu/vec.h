// Small inline vector helpers the kernels share. Reductions keep 16 independent partial sums so g++ -O3
// vectorises them without -ffast-math (the order of additions is fixed, results are deterministic).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace pixelllm::cpu::vec {

constexpr int kLanes = 16;

inline float reduce_lanes(const float* acc) {
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  float s = reduce_lanes(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline float sum(const float* a, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l];
  float s = reduce_lanes(acc);
  for (; i < n; ++i) s += a[i];
  return s;
}

// sum((a - mean)^2)
inline float sum_sq_dev(const float* a, int64_t n, float mean) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      float d = a[i + l] - mean;
      acc[l] += d * d;
    }
  float s = reduce_lanes(acc);
  for (; i < n; ++i) s += (a[i] - mean) * (a[i] - mean);
  return s;
}

inline float max(const float* a, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = a[i] > m ? a[i] : m;
  return m;
}

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline void scale(float* y, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

}  // namespace pixelllm::cpu::vec
