// 16-float vectors through GCC/clang vector extensions, for kernels that are compiled several times
// (PIXELLLM_SIMD_CLONES: x86-64-v4 with one zmm per vector, x86-64-v3 with two ymm, the baseline with four xmm)
// and picked at load time (ifunc), so the shipped x86-64-v2 build still uses AVX-512 / AVX2 where the CPU has them.
//
// Vectors never cross a function boundary by value (helpers take references): clang rejects by-value AVX-sized
// vectors in code compiled without AVX (the baseline clone) because they change the calling convention.
#pragma once

#include <cstdint>

namespace pixelllm::cpu::simd {

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef float vf_unaligned __attribute__((vector_size(64), aligned(4), may_alias));
typedef uint16_t vh_unaligned __attribute__((vector_size(32), aligned(2), may_alias));  // 16 bfloat16
constexpr int kLanes = 16;

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PIXELLLM_SIMD_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PIXELLLM_SIMD_ASAN 1
#endif
#if defined(__x86_64__) && defined(__linux__) && !defined(PIXELLLM_SIMD_ASAN)
#define PIXELLLM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PIXELLLM_SIMD_CLONES
#endif
#define PIXELLLM_SIMD_INLINE __attribute__((always_inline)) inline

PIXELLLM_SIMD_INLINE void load(vf& v, const float* p) { v = *reinterpret_cast<const vf_unaligned*>(p); }
PIXELLLM_SIMD_INLINE void store(float* p, const vf& v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
PIXELLLM_SIMD_INLINE void splat(vf& v, float s) { v = vf{} + s; }
// 16 bfloat16 (the upper halves of float32) widened to float32, exactly.
PIXELLLM_SIMD_INLINE void load(vf& v, const uint16_t* p) {
  v = (vf)(__builtin_convertvector(*reinterpret_cast<const vh_unaligned*>(p), vi) << 16);
}

// v = mask ? a : b, lane-wise (mask lanes are all-ones or zero, as vector comparisons produce them).
PIXELLLM_SIMD_INLINE void select(vf& v, const vi& mask, const vf& a, const vf& b) {
  v = (vf)(((vi)a & mask) | ((vi)b & ~mask));
}

PIXELLLM_SIMD_INLINE float hmax(const vf& v) {
  float m = v[0];
  for (int l = 1; l < kLanes; ++l) m = v[l] > m ? v[l] : m;
  return m;
}

PIXELLLM_SIMD_INLINE float hsum(const vf& v) {
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// x = exp(x), lane-wise, within ~2 ulp (Cephes expf polynomial on a round-to-nearest range reduction).
// Lanes below ln(2^-126) (including -inf) become exactly 0 (no denormals); lanes above 88.02 saturate at
// exp(88.02) ~ 1.6e38; NaN lanes become 0.
PIXELLLM_SIMD_INLINE void exp(vf& x) {
  const vi keep = x >= -87.33654f;
  vf v;
  const vf lo = vf{} - 87.33654f, hi = vf{} + 88.02f;
  select(v, x > hi, hi, x);
  select(v, v < lo, lo, v);
  const vf n = (v * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round(v / ln 2), |n| <= 127
  vf r = v - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vf{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;  // 2^n
  x = (vf)((vi)(p * (vf)e) & keep);
}

}  // namespace pixelllm::cpu::simd
