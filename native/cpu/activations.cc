#include "cpu/activations.h"

#include <algorithm>
#include <cstring>

#include "core/thread_pool.h"
#include "cpu/simd.h"

namespace pixelllm::cpu {

namespace {

using simd::vf;
using simd::vi;

constexpr int64_t kGrain = 1 << 14;

// Lane-wise activations on 16-float vectors (simd::exp based; no libm calls in the loops).

// Exact GELU 0.5 x (1 + erf(x / sqrt 2)) with erfc(|z|) = t P(t) exp(-z^2), t = 1 / (1 + p |z|)
// (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): 1 + erf(z) is 2 - erfc(|z|) for z >= 0 and erfc(|z|) below.
PIXELLLM_SIMD_INLINE void gelu_v(vf& v) {
  const vf z = v * 0.7071067811865476f;
  const vf a = (vf)((vi)z & 0x7fffffff);
  const vf t = 1.0f / (1.0f + 0.3275911f * a);
  vf p = 1.061405429f * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  p = p * t;
  vf e = -(a * a);
  simd::exp(e);
  const vf erfc = p * e;
  vf one_plus_erf;
  simd::select(one_plus_erf, z >= 0.f, 2.0f - erfc, erfc);
  v = 0.5f * v * one_plus_erf;
}

// x sigmoid(x) = x / (1 + exp(-x)).
PIXELLLM_SIMD_INLINE void silu_v(vf& v) {
  vf e = -v;
  simd::exp(e);
  v = v / (1.0f + e);
}

// 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
PIXELLLM_SIMD_INLINE void gelu_tanh_v(vf& v) {
  vf e = -1.5957691216057308f * (v + 0.044715f * v * v * v);
  simd::exp(e);
  v = v / (1.0f + e);
}

PIXELLLM_SIMD_INLINE void relu_v(vf& v) { v = (vf)((vi)v & (v > 0.f)); }

enum class Act { Gelu, GeluTanh, Silu, Relu };

PIXELLLM_SIMD_INLINE void apply(Act act, vf& v) {
  switch (act) {
    case Act::Gelu: gelu_v(v); break;
    case Act::GeluTanh: gelu_tanh_v(v); break;
    case Act::Silu: silu_v(v); break;
    case Act::Relu: relu_v(v); break;
  }
}

// out[i] = act(x[i]) (* up[i] when up is given), i in [0, n); out may alias x or up. The tail goes through a
// zero-padded vector, so every element takes the same code path whatever its position.
PIXELLLM_SIMD_CLONES void act_range(Act act, const float* x, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  vf v, u;
  for (; i + simd::kLanes <= n; i += simd::kLanes) {
    simd::load(v, x + i);
    apply(act, v);
    if (up) {
      simd::load(u, up + i);
      v *= u;
    }
    simd::store(out + i, v);
  }
  if (i < n) {
    float xb[simd::kLanes] = {}, ub[simd::kLanes] = {};
    const size_t rest = static_cast<size_t>(n - i);
    std::memcpy(xb, x + i, rest * sizeof(float));
    simd::load(v, xb);
    apply(act, v);
    if (up) {
      std::memcpy(ub, up + i, rest * sizeof(float));
      simd::load(u, ub);
      v *= u;
    }
    simd::store(xb, v);
    std::memcpy(out + i, xb, rest * sizeof(float));
  }
}

void run(Act act, const float* x, const float* up, float* out, int64_t n, core::ThreadPool* pool) {
  core::parallel_for(pool, n, kGrain, [&](int64_t b, int64_t e) {
    act_range(act, x + b, up ? up + b : nullptr, out + b, e - b);
  });
}

}  // namespace

void gelu(float* x, int64_t n, core::ThreadPool* pool) { run(Act::Gelu, x, nullptr, x, n, pool); }

void gelu_tanh(float* x, int64_t n, core::ThreadPool* pool) { run(Act::GeluTanh, x, nullptr, x, n, pool); }

void silu(float* x, int64_t n, core::ThreadPool* pool) { run(Act::Silu, x, nullptr, x, n, pool); }

void relu(float* x, int64_t n, core::ThreadPool* pool) { run(Act::Relu, x, nullptr, x, n, pool); }

void silu_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool) {
  run(Act::Silu, gate, up, out, n, pool);
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool) {
  run(Act::GeluTanh, gate, up, out, n, pool);
}

}  // namespace pixelllm::cpu
