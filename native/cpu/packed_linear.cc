#include "cpu/packed_linear.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"

namespace pixelllm::cpu {

using namespace simd;

namespace {

// y[r * ldy + 16 * k + l] += sum_i P_k[i][l] x[r * ldx + i] for the K panels starting at `p` (16 * K outputs) and
// R rows; `valid` = outputs of the last panel that exist (16 unless it is the padded tail). T: float or uint16_t
// (bfloat16, widened exactly by simd::load).
template <int K, int R, typename T>
PIXELLLM_SIMD_INLINE void panels_rows(const T* p, int64_t in, const float* x, int64_t ldx, float* y, int64_t ldy,
                                      int valid) {
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
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) {
      float* yr = y + r * ldy + k * kLanes;
      if (k + 1 < K || valid == kLanes) {
        vf t;
        load(t, yr);
        t += acc[k][r];
        store(yr, t);
      } else {
        for (int l = 0; l < valid; ++l) yr[l] += acc[k][r][l];
      }
    }
}

// Rows in blocks of 8 / 4 / 1 against K panels.
template <int K, typename T>
PIXELLLM_SIMD_INLINE void panels_all_rows(const T* p, int64_t in, const float* x, int64_t ldx, int64_t rows,
                                          float* y, int64_t ldy, int valid) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) panels_rows<K, 8>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid);
  for (; r + 4 <= rows; r += 4) panels_rows<K, 4>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid);
  for (; r < rows; ++r) panels_rows<K, 1>(p, in, x + r * ldx, ldx, y + r * ldy, ldy, valid);
}

// Panels [p0, p1) of w for all rows. One row takes 4 panels at a time (4 independent FMA chains), more rows 2.
template <typename T>
PIXELLLM_SIMD_INLINE void panel_range(const T* w, int64_t in, int64_t out, int64_t p0, int64_t p1, const float* x,
                                      int64_t ldx, int64_t rows, float* y, int64_t ldy) {
  const int64_t last = (out + kLanes - 1) / kLanes - 1;
  const int tail = static_cast<int>(out - last * kLanes);
  const int64_t step = rows == 1 ? 4 : 2;
  int64_t p = p0;
  for (; p + step <= p1; p += step) {
    const T* pp = w + p * in * kLanes;
    const int valid = p + step - 1 == last ? tail : kLanes;
    if (step == 4)
      panels_all_rows<4>(pp, in, x, ldx, rows, y + p * kLanes, ldy, valid);
    else
      panels_all_rows<2>(pp, in, x, ldx, rows, y + p * kLanes, ldy, valid);
  }
  for (; p < p1; ++p)
    panels_all_rows<1>(w + p * in * kLanes, in, x, ldx, rows, y + p * kLanes, ldy, p == last ? tail : kLanes);
}

// The compiled (cloned) kernels of each weight format.
PIXELLLM_SIMD_CLONES void panel_range_f32(const float* w, int64_t in, int64_t out, int64_t p0, int64_t p1,
                                          const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy) {
  panel_range(w, in, out, p0, p1, x, ldx, rows, y, ldy);
}
PIXELLLM_SIMD_CLONES void panel_range_bf16(const uint16_t* w, int64_t in, int64_t out, int64_t p0, int64_t p1,
                                           const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy) {
  panel_range(w, in, out, p0, p1, x, ldx, rows, y, ldy);
}

void run_panels(const PackedWeight& w, int64_t p0, int64_t p1, const float* x, int64_t ldx, int64_t rows, float* y,
                int64_t ldy) {
  if (w.format() == WeightFormat::bf16)
    panel_range_bf16(w.bf16(), w.in(), w.out(), p0, p1, x, ldx, rows, y, ldy);
  else
    panel_range_f32(w.f32(), w.in(), w.out(), p0, p1, x, ldx, rows, y, ldy);
}

// float32 -> bfloat16, round to nearest even (NaN stays a quiet NaN).
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Torch-layout w (out, in) -> panels d (panels, in, 16): d[(o / 16) * in * 16 + i * 16 + o % 16] = convert(w[o][i]).
template <typename T, typename Convert>
void scatter_panels(const float* w, int64_t out, int64_t in, T* d, Convert convert) {
  for (int64_t o = 0; o < out; ++o) {
    const float* row = w + o * in;
    T* dst = d + (o / kLanes) * in * kLanes + o % kLanes;
    for (int64_t i = 0; i < in; ++i) dst[i * kLanes] = convert(row[i]);
  }
}

}  // namespace

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
  if (format == WeightFormat::bf16) {
    p.data_ = core::Tensor::zeros({(n + 1) / 2});
    scatter_panels(w, out, in, reinterpret_cast<uint16_t*>(p.data_.data()), to_bf16);
  } else {
    p.data_ = core::Tensor::zeros({panels, in, kLanes});
    scatter_panels(w, out, in, p.data_.data(), [](float v) { return v; });
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
  linear_output_start(y, rows, out, ldy, bias, accumulate, /*zero_fill=*/true);  // the kernels add to y
  const int64_t panels = w.panels();
  std::shared_ptr<core::ThreadPool> pool = blas_pool();
  const bool split = pool && pool->size() > 1 &&
                     (double(w.bytes()) >= kSplitWeightBytes || 2.0 * double(rows) * out * in >= kSplitFlops);
  if (!split) {
    run_panels(w, 0, panels, x, ldx, rows, y, ldy);
    return;
  }
  // Chunks of 4 panels (64 outputs; ~4 chunks per thread for large weights), claimed dynamically: the calling
  // thread starts at once, a late worker only takes what is left.
  const int64_t groups = (panels + 3) / 4;
  pool->parallel_for(groups, 1, [&](int64_t g0, int64_t g1) {
    run_panels(w, g0 * 4, std::min(panels, g1 * 4), x, ldx, rows, y, ldy);
  });
}

}  // namespace pixelllm::cpu
