#include "cpu/packed_linear.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PIXELLLM_HAVE_BF16_DOT 1
#define PIXELLLM_BF16_TARGET __attribute__((target("avx512f,avx512bf16")))
#endif

namespace pixelllm::cpu {

using namespace simd;

namespace {

// y[r * ldy + 16 * k + l] += sum_i P_k[i][l] x[r * ldx + i] for the K panels starting at `p` (16 * K outputs) and
// R rows; `valid` = outputs of the last panel that exist (16 unless it is the padded tail). T: float or uint16_t
// (bfloat16, widened exactly by simd::load).
template <int K, int R, typename T>
PIXELLLM_SIMD_INLINE void panels_rows(const T* p, int64_t in, const float* x, int64_t ldx, float* y, int64_t ldy,
                                      int valid, const float* bias, bool add_y) {
  vf acc[K][R];
  for (int k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) acc[k][r] = vf{};
  const int64_t pstride = in * kLanes;
  for (int64_t i = 0; i < in; ++i) {
    vf w[K];
    for (int k = 0; k < K; ++k) load(w[k], p + k * pstride + i * kLanes);
    for (int r = 0; r < R; ++r) {
      const float xv = x[r * ldx + i];
      for (int k = 0; k < K; ++k) acc[k][r] += w[k] * xv;
    }
  }
  // y = start + products, start = y + bias, y, bias or 0 (the values linear_output_start would have written).
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) {
      float* yr = y + r * ldy + k * kLanes;
      const float* br = bias ? bias + k * kLanes : nullptr;
      if (k + 1 < K || valid == kLanes) {
        vf t = {}, b;
        if (add_y) load(t, yr);
        if (br) {
          load(b, br);
          t = add_y ? t + b : b;
        }
        t += acc[k][r];
        store(yr, t);
      } else {
        for (int l = 0; l < valid; ++l) {
          float t = add_y ? yr[l] : 0.f;
          if (br) t = add_y ? t + br[l] : br[l];
          yr[l] = t + acc[k][r][l];
        }
      }
    }
}

// Rows in blocks of 8 / 4 / 1 against K panels.
template <int K, typename T>
PIXELLLM_SIMD_INLINE void panels_all_rows(const T* p, int64_t in, const float* x, int64_t ldx, int64_t rows,
                                          float* y, int64_t ldy, int valid, const float* bias, bool add_y) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) panels_rows<K, 8>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid, bias, add_y);
  for (; r + 4 <= rows; r += 4) panels_rows<K, 4>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid, bias, add_y);
  for (; r < rows; ++r) panels_rows<K, 1>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid, bias, add_y);
}

// Panels [p0, p1) of w for all rows: y = (add_y ? y : 0) + bias (when given) + x W^T. One row takes 4 panels at a
// time (4 independent FMA chains), more rows 2.
template <typename T>
PIXELLLM_SIMD_INLINE void panel_range(const T* w, int64_t in, int64_t out, int64_t p0, int64_t p1, const float* x,
                                      int64_t ldx, int64_t rows, float* y, int64_t ldy, const float* bias,
                                      bool add_y) {
  const int64_t last = (out + kLanes - 1) / kLanes - 1;
  const int tail = static_cast<int>(out - last * kLanes);
  const int64_t step = rows == 1 ? 4 : 2;
  int64_t p = p0;
  for (; p + step <= p1; p += step) {
    const T* pp = w + p * in * kLanes;
    const int valid = p + step - 1 == last ? tail : kLanes;
    const float* b = bias ? bias + p * kLanes : nullptr;
    if (step == 4)
      panels_all_rows<4>(pp, in, x, ldx, rows, y + p * kLanes, ldy, valid, b, add_y);
    else
      panels_all_rows<2>(pp, in, x, ldx, rows, y + p * kLanes, ldy, valid, b, add_y);
  }
  for (; p < p1; ++p)
    panels_all_rows<1>(w + p * in * kLanes, in, x, ldx, rows, y + p * kLanes, ldy, p == last ? tail : kLanes,
                       bias ? bias + p * kLanes : nullptr, add_y);
}

// The compiled (cloned) kernels of each weight format.
PIXELLLM_SIMD_CLONES void panel_range_f32(const float* w, int64_t in, int64_t out, int64_t p0, int64_t p1,
                                          const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                                          const float* bias, bool add_y) {
  panel_range(w, in, out, p0, p1, x, ldx, rows, y, ldy, bias, add_y);
}
PIXELLLM_SIMD_CLONES void panel_range_bf16(const uint16_t* w, int64_t in, int64_t out, int64_t p0, int64_t p1,
                                           const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                                           const float* bias, bool add_y) {
  panel_range(w, in, out, p0, p1, x, ldx, rows, y, ldy, bias, add_y);
}

#ifdef PIXELLLM_HAVE_BF16_DOT
// bf16_dot: y[r][16k + l] += sum_i dot(P_k[i][l], x2[r][i]) (two bfloat16 products per 32-bit pair, vdpbf16ps) for K
// panels and R rows of pairs x2 (row stride ldx2 pairs).
template <int K, int R>
PIXELLLM_BF16_TARGET inline void dot_panels_rows(const uint32_t* p, int64_t in2, const uint32_t* x2, int64_t ldx2,
                                                 float* y, int64_t ldy, int valid) {
  __m512 acc[K][R];
  for (int k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) acc[k][r] = _mm512_setzero_ps();
  const int64_t pstride = in2 * kLanes;
  for (int64_t i = 0; i < in2; ++i) {
    __m512i w[K];
    for (int k = 0; k < K; ++k) w[k] = _mm512_loadu_si512(p + k * pstride + i * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512i xv = _mm512_set1_epi32(static_cast<int>(x2[r * ldx2 + i]));
      for (int k = 0; k < K; ++k) acc[k][r] = _mm512_dpbf16_ps(acc[k][r], (__m512bh)w[k], (__m512bh)xv);
    }
  }
  const __mmask16 tail = static_cast<__mmask16>((1u << valid) - 1u);
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) {
      float* yr = y + r * ldy + k * kLanes;
      const __mmask16 m = k + 1 < K || valid == kLanes ? static_cast<__mmask16>(0xffff) : tail;
      _mm512_mask_storeu_ps(yr, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, yr), acc[k][r]));
    }
}

template <int K>
PIXELLLM_BF16_TARGET inline void dot_panels_all_rows(const uint32_t* p, int64_t in2, const uint32_t* x2, int64_t ldx2,
                                                     int64_t rows, float* y, int64_t ldy, int valid) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) dot_panels_rows<K, 8>(p, in2, x2 + r * ldx2, ldx2, y + r * ldy, ldy, valid);
  for (; r + 4 <= rows; r += 4) dot_panels_rows<K, 4>(p, in2, x2 + r * ldx2, ldx2, y + r * ldy, ldy, valid);
  for (; r < rows; ++r) dot_panels_rows<K, 1>(p, in2, x2 + r * ldx2, ldx2, y + r * ldy, ldy, valid);
}

// rows x n floats (row stride ldx) -> bfloat16 pairs (round to nearest even, denormals to zero; (n + 1) / 2 pairs
// per row, the missing last input 0): 32 floats per vcvtne2ps2bf16.
PIXELLLM_BF16_TARGET void rows_to_bf16_pairs(const float* x, int64_t rows, int64_t n, int64_t ldx, uint32_t* x2) {
  const int64_t n2 = (n + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    uint32_t* dst = x2 + r * n2;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xr + i + 16), _mm512_loadu_ps(xr + i));
      _mm512_storeu_si512(dst + i / 2, (__m512i)v);
    }
    if (i < n) {  // the tail through a zero-padded block of 32
      alignas(64) float tail[32] = {};
      std::memcpy(tail, xr + i, static_cast<size_t>(n - i) * sizeof(float));
      alignas(64) uint32_t pairs[16];
      _mm512_store_si512(pairs, (__m512i)_mm512_cvtne2ps_pbh(_mm512_load_ps(tail + 16), _mm512_load_ps(tail)));
      std::memcpy(dst + i / 2, pairs, static_cast<size_t>(n2 - i / 2) * sizeof(uint32_t));
    }
  }
}

PIXELLLM_BF16_TARGET void panel_range_bf16_dot(const uint32_t* w, int64_t in2, int64_t out, int64_t p0, int64_t p1,
                                               const uint32_t* x2, int64_t rows, float* y, int64_t ldy) {
  const int64_t last = (out + kLanes - 1) / kLanes - 1;
  const int tail = static_cast<int>(out - last * kLanes);
  int64_t p = p0;
  for (; p + 2 <= p1; p += 2)
    dot_panels_all_rows<2>(w + p * in2 * kLanes, in2, x2, in2, rows, y + p * kLanes, ldy,
                           p + 1 == last ? tail : kLanes);
  for (; p < p1; ++p)
    dot_panels_all_rows<1>(w + p * in2 * kLanes, in2, x2, in2, rows, y + p * kLanes, ldy, p == last ? tail : kLanes);
}
#endif

// float32 -> bfloat16, round to nearest even (NaN stays a quiet NaN).
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Inputs 2i (low half) and 2i + 1 (high half; 0 past the end) of a row of n floats as a bfloat16 pair.
uint32_t bf16_pair(const float* row, int64_t n, int64_t i) {
  const uint32_t lo = to_bf16(row[2 * i]), hi = 2 * i + 1 < n ? to_bf16(row[2 * i + 1]) : 0u;
  return lo | (hi << 16);
}

// Torch-layout w (out, in) -> panels d (panels, cols, 16): d[(o / 16) * cols * 16 + c * 16 + o % 16] =
// element(w[o], c) for c < cols (cols = in, or (in + 1) / 2 for bfloat16 pairs).
template <typename T, typename Element>
void scatter_panels(const float* w, int64_t out, int64_t in, int64_t cols, T* d, Element element) {
  for (int64_t o = 0; o < out; ++o) {
    const float* row = w + o * in;
    T* dst = d + (o / kLanes) * cols * kLanes + o % kLanes;
    for (int64_t c = 0; c < cols; ++c) dst[c * kLanes] = element(row, c);
  }
}

// Panels [p0, p1) for every row, with the outputs' start (bias, y + bias, y or zero; linear_output_start) for those
// columns: the f32 / bf16 kernels apply it as they store (it had been a serial pass on the calling thread before
// the split, e.g. a 257 x 682 bias copy, while the worker waited; demo encode, alternated runs: 8.57-8.74 ->
// 8.45-8.60 ms per chunk, then 8.34-8.59 -> 8.06-8.38 ms in the stores), bf16_dot writes it first and adds. x2: the rows as bfloat16 pairs (bf16_dot only, dense: (in + 1) / 2 pairs per row).
void run_panels(const PackedWeight& w, int64_t p0, int64_t p1, const float* x, int64_t ldx, const uint32_t* x2,
                int64_t rows, float* y, int64_t ldy, const float* bias, bool accumulate) {
  if (w.format() == WeightFormat::bf16_dot) {
    const int64_t o0 = p0 * kLanes, o1 = std::min(w.out(), p1 * kLanes);
    linear_output_start(y + o0, rows, o1 - o0, ldy, bias ? bias + o0 : nullptr, accumulate, /*zero_fill=*/true);
#ifdef PIXELLLM_HAVE_BF16_DOT
    panel_range_bf16_dot(w.bf16_pairs(), (w.in() + 1) / 2, w.out(), p0, p1, x2, rows, y, ldy);
#else
    (void)x2;
#endif
    return;
  }
  if (w.format() == WeightFormat::bf16)
    panel_range_bf16(w.bf16(), w.in(), w.out(), p0, p1, x, ldx, rows, y, ldy, bias, accumulate);
  else
    panel_range_f32(w.f32(), w.in(), w.out(), p0, p1, x, ldx, rows, y, ldy, bias, accumulate);
}

}  // namespace

bool bf16_dot_supported() noexcept {
#ifdef PIXELLLM_HAVE_BF16_DOT
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}

WeightFormat weight_format(const std::string& name) {
  if (name == "fp32") return WeightFormat::f32;
  if (name == "bf16") return WeightFormat::bf16;
  core::fail(core::ErrorCode::InvalidArgument, "weight format '" + name + "' (expected 'fp32' or 'bf16')");
}

PackedWeight PackedWeight::pack(const float* w, int64_t out, int64_t in, WeightFormat format) {
  PIXELLLM_CHECK(w != nullptr && out > 0 && in > 0, InvalidArgument,
                 "packed_linear: weight (" + std::to_string(out) + ", " + std::to_string(in) + ") is empty");
  PackedWeight p;
  p.out_ = out;
  p.in_ = in;
  p.format_ = format;
  const int64_t panels = (out + kLanes - 1) / kLanes;
  const int64_t n = panels * in * kLanes;
  if (format == WeightFormat::bf16_dot) {
    const int64_t in2 = (in + 1) / 2;
    p.data_ = core::Tensor::zeros({panels * in2 * kLanes});
    scatter_panels(w, out, in, in2, reinterpret_cast<uint32_t*>(p.data_.data()),
                   [in](const float* row, int64_t c) { return bf16_pair(row, in, c); });
  } else if (format == WeightFormat::bf16) {
    p.data_ = core::Tensor::zeros({(n + 1) / 2});
    scatter_panels(w, out, in, in, reinterpret_cast<uint16_t*>(p.data_.data()),
                   [](const float* row, int64_t c) { return to_bf16(row[c]); });
  } else {
    p.data_ = core::Tensor::zeros({panels, in, kLanes});
    scatter_panels(w, out, in, in, p.data_.data(), [](const float* row, int64_t c) { return row[c]; });
  }
  return p;
}

PackedWeight PackedWeight::pack(const core::Tensor& w, WeightFormat format) {
  PIXELLLM_CHECK(w.ndim() == 2, InvalidArgument, "packed_linear: weight must be 2-D, got " + core::shape_str(w.shape()));
  return pack(w.data(), w.shape()[0], w.shape()[1], format);
}

void linear(const float* x, int64_t rows, const PackedWeight& w, const float* bias, float* y, bool accumulate,
            int64_t ldx, int64_t ldy) {
  const int64_t in = w.in(), out = w.out();
  if (ldx == 0) ldx = in;
  if (ldy == 0) ldy = out;
  if (rows <= 0 || out == 0) return;
  PIXELLLM_CHECK(ldx >= in && ldy >= out, InvalidArgument, "packed_linear: row strides smaller than the rows");
  const int64_t panels = w.panels();
  const uint32_t* x2 = nullptr;
  thread_local std::vector<uint32_t> x2_buf;  // the caller's thread: reused across calls
  if (w.format() == WeightFormat::bf16_dot) {
    PIXELLLM_CHECK(bf16_dot_supported(), BackendUnavailable, "packed_linear: bf16_dot needs a CPU with AVX512-BF16");
    const int64_t in2 = (in + 1) / 2;
    x2_buf.resize(static_cast<size_t>(rows * in2));
#ifdef PIXELLLM_HAVE_BF16_DOT
    rows_to_bf16_pairs(x, rows, in, ldx, x2_buf.data());
#endif
    x2 = x2_buf.data();
  }
  std::shared_ptr<core::ThreadPool> pool = blas_pool();
  const bool split = pool && pool->size() > 1 &&
                     (double(w.bytes()) >= kSplitWeightBytes || 2.0 * double(rows) * out * in >= kSplitFlops);
  if (!split) {
    run_panels(w, 0, panels, x, ldx, x2, rows, y, ldy, bias, accumulate);
    return;
  }
  // Chunks of 4 panels (64 outputs; ~4 chunks per thread for large weights), claimed dynamically: the calling
  // thread starts at once, a late worker only takes what is left. A narrow product (the demo encoders' 128-output
  // projections: 2 groups) is also cut into blocks of rows (a multiple of 8, the kernel's row block) until there
  // are ~4 chunks per thread, so a worker that starts late does not leave the caller waiting on half the product.
  // Each output is the same FMA chain however the rows are cut (bit for bit).
  const int64_t groups = (panels + 3) / 4, want = 4 * int64_t(pool->size());
  int64_t block = rows;
  if (groups < want && rows >= 32) block = std::max<int64_t>(8, (rows * groups / want + 7) / 8 * 8);
  const int64_t blocks = (rows + block - 1) / block, in2 = (in + 1) / 2;
  pool->parallel_for(groups * blocks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1;) {
      const int64_t b = c / groups, g0 = c % groups, g1 = std::min(groups, g0 + (c1 - c));  // whole run in block b
      const int64_t r0 = b * block, n = std::min(rows, r0 + block) - r0;
      run_panels(w, g0 * 4, std::min(panels, g1 * 4), x + r0 * ldx, ldx, x2 ? x2 + r0 * in2 : nullptr, n,
                 y + r0 * ldy, ldy, bias, accumulate);
      c += g1 - g0;
    }
  });
}

}  // namespace pixelllm::cpu
