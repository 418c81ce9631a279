#include "cpu/gemv.h"

#include "cpu/simd.h"

namespace pixelllm::cpu {

using namespace simd;

// No software prefetch: with the weights on huge pages (core/tensor.cc) the hardware prefetcher streams them at the
// machine's read bandwidth (bench `roofline`: 31.4 GB/s on one thread, as a plain streaming sum), and a prefetch
// 8 KB ahead cut that to 18 GB/s.
namespace {
// y[r * ldy] += dot(wr, x + r * ldx) for r < R: one pass over the weight row for R input rows.
template <int R>
PIXELLLM_SIMD_INLINE void dot_row(const float* wr, int64_t in, const float* x, int64_t ldx, float* y, int64_t ldy) {
  vf acc[R];
  for (int r = 0; r < R; ++r) acc[r] = vf{};
  int64_t i = 0;
  for (; i + kLanes <= in; i += kLanes) {
    vf w;
    load(w, wr + i);
    for (int r = 0; r < R; ++r) {
      vf xv;
      load(xv, x + r * ldx + i);
      acc[r] += w * xv;
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(acc[r]);
    for (int64_t j = i; j < in; ++j) s += wr[j] * x[r * ldx + j];
    y[r * ldy] += s;
  }
}

}  // namespace

PIXELLLM_SIMD_CLONES void gemv_accumulate(const float* w, int64_t in, int64_t out, const float* x, float* y) {
  for (int64_t o = 0; o < out; ++o) {
    const float* wr = w + o * in;
    vf a0 = vf{}, a1 = vf{}, a2 = vf{}, a3 = vf{};
    int64_t i = 0;
    for (; i + 4 * kLanes <= in; i += 4 * kLanes) {
      vf w0, w1, w2, w3, x0, x1, x2, x3;
      load(w0, wr + i);
      load(w1, wr + i + kLanes);
      load(w2, wr + i + 2 * kLanes);
      load(w3, wr + i + 3 * kLanes);
      load(x0, x + i);
      load(x1, x + i + kLanes);
      load(x2, x + i + 2 * kLanes);
      load(x3, x + i + 3 * kLanes);
      a0 += w0 * x0;
      a1 += w1 * x1;
      a2 += w2 * x2;
      a3 += w3 * x3;
    }
    for (; i + kLanes <= in; i += kLanes) {
      vf w0, x0;
      load(w0, wr + i);
      load(x0, x + i);
      a0 += w0 * x0;
    }
    float s = hsum((a0 + a1) + (a2 + a3));
    for (; i < in; ++i) s += wr[i] * x[i];
    y[o] += s;
  }
}

}  // namespace pixelllm::cpu
