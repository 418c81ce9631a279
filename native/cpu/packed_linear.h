// Linear layers whose weight is packed once at load into 16-output panels: the text decoders (a decode step of one
// row, the 2-16 rows of batched requests and beams, their prefills) and the image encoders (SAM, EVA02: qkv, proj,
// MLP, neck, patch embedding) read every weight in memory order with no per-call packing (OpenBLAS re-packs each
// weight block on every call: ~20 % of a batched step of the demo decoder). Measured against OpenBLAS sgemm on the
// encoders' shapes (bench exe `linear ROWS IN OUT`): as fast or faster on all but one (576 x 768 -> 2304, -3 %), up
// to 232 vs 199 GFLOP/s; the official encode went 1692-1708 -> 1590-1610 ms. Panel p holds W[16p .. 16p+15][i] for i = 0..in-1 as in x 16 floats (zero-padded past
// `out`); each output is accumulated over i in order, one FMA chain per output, so a row's result does not depend
// on how many rows run with it (batched == unbatched, bit for bit).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace pixelllm::cpu {

class PackedWeight {
 public:
  PackedWeight() = default;
  // From torch layout: w (out, in) row-major.
  static PackedWeight pack(const float* w, int64_t out, int64_t in);
  static PackedWeight pack(const core::Tensor& w);  // 2-D (out, in)

  int64_t out() const noexcept { return out_; }
  int64_t in() const noexcept { return in_; }
  int64_t panels() const noexcept { return (out_ + 15) / 16; }
  const float* data() const noexcept { return data_.data(); }
  bool defined() const noexcept { return out_ > 0; }

 private:
  int64_t out_ = 0, in_ = 0;
  core::Tensor data_;  // (panels, in, 16)
};

// y (rows, out) = x (rows, in) @ W^T + bias, as cpu::linear (gemm.h) with the packed weight: bias (out) or null,
// accumulate adds to y, row strides ldx / ldy (0 = dense). Large products are split over the GEMM pool.
void linear(const float* x, int64_t rows, const PackedWeight& w, const float* bias, float* y,
            bool accumulate = false, int64_t ldx = 0, int64_t ldy = 0);

}  // namespace pixelllm::cpu
