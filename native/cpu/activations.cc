#include "cpu/activations.h"

#include <cmath>

#include "core/thread_pool.h"

namespace pixelllm::cpu {

namespace {

constexpr int64_t kGrain = 1 << 14;

inline float gelu_tanh_scalar(float v) {
  constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * v * (1.0f + std::tanh(kC * (v + 0.044715f * v * v * v)));
}

inline float silu_scalar(float v) { return v / (1.0f + std::exp(-v)); }

template <typename F>
void map(float* x, int64_t n, core::ThreadPool* pool, F f) {
  core::parallel_for(pool, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = f(x[i]);
  });
}

template <typename F>
void map2(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool, F f) {
  core::parallel_for(pool, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(gate[i]) * up[i];
  });
}

}  // namespace

void gelu(float* x, int64_t n, core::ThreadPool* pool) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  map(x, n, pool, [](float v) { return 0.5f * v * (1.0f + std::erf(v * kInvSqrt2)); });
}

void gelu_tanh(float* x, int64_t n, core::ThreadPool* pool) { map(x, n, pool, gelu_tanh_scalar); }

void silu(float* x, int64_t n, core::ThreadPool* pool) { map(x, n, pool, silu_scalar); }

void relu(float* x, int64_t n, core::ThreadPool* pool) {
  map(x, n, pool, [](float v) { return v > 0.f ? v : 0.f; });
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool) {
  map2(gate, up, out, n, pool, silu_scalar);
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool) {
  map2(gate, up, out, n, pool, gelu_tanh_scalar);
}

}  // namespace pixelllm::cpu
