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
#include <string>

#include "core/tensor.h"

namespace pixelllm::cpu {

// How a packed weight is stored and multiplied.
// f32: as given. bf16: each weight rounded (to nearest even) to bfloat16, half the bytes; products still multiply
// and add in float32 (the weight is widened exactly in registers), so only the weights' rounding differs from f32
// (relative error <= 2^-9 per weight). For memory-bound products (a decode step streams every weight once per
// token) half the bytes is up to twice the speed.
// bf16_dot: bfloat16 COMPUTE for compute-bound products (the image encoders): weights AND the input rows are rounded
// to bfloat16 and multiplied in pairs by AVX512-BF16 dot-product instructions (vdpbf16ps: two products per lane
// per instruction, float32 accumulation), twice the FMA rate. Needs a CPU with AVX512-BF16 (bf16_dot_supported());
// each product's relative error is ~2^-8.
enum class WeightFormat { f32, bf16, bf16_dot };

// Whether this CPU (and build) runs WeightFormat::bf16_dot.
bool bf16_dot_supported() noexcept;

// "fp32" | "bf16" -> the format; INVALID_ARGUMENT otherwise.
WeightFormat weight_format(const std::string& name);

class PackedWeight {
 public:
  PackedWeight() = default;
  // From torch layout: w (out, in) row-major.
  static PackedWeight pack(const float* w, int64_t out, int64_t in, WeightFormat format = WeightFormat::f32);
  static PackedWeight pack(const core::Tensor& w, WeightFormat format = WeightFormat::f32);  // 2-D (out, in)

  int64_t out() const noexcept { return out_; }
  int64_t in() const noexcept { return in_; }
  int64_t panels() const noexcept { return (out_ + 15) / 16; }
  WeightFormat format() const noexcept { return format_; }
  // The panels: (panels, in, 16) floats (f32) or bfloat16 bit patterns (bf16); bf16_dot: (panels, (in + 1) / 2, 16)
  // pairs of bfloat16 (inputs 2i in the low, 2i + 1 in the high half of each 32 bits; a missing last input is 0).
  const float* f32() const noexcept { return data_.data(); }
  const uint16_t* bf16() const noexcept { return reinterpret_cast<const uint16_t*>(data_.data()); }
  const uint32_t* bf16_pairs() const noexcept { return reinterpret_cast<const uint32_t*>(data_.data()); }
  int64_t bytes() const noexcept {
    return format_ == WeightFormat::bf16_dot ? panels() * ((in_ + 1) / 2) * 16 * 4
                                             : panels() * in_ * 16 * (format_ == WeightFormat::bf16 ? 2 : 4);
  }
  bool defined() const noexcept { return out_ > 0; }

 private:
  int64_t out_ = 0, in_ = 0;
  WeightFormat format_ = WeightFormat::f32;
  core::Tensor data_;  // f32: (panels, in, 16); bf16: the same count of uint16 in half as many floats (a Tensor
                       // for its allocation: 64-byte aligned, huge pages when large)
};

// y (rows, out) = x (rows, in) @ W^T + bias, as cpu::linear (gemm.h) with the packed weight: bias (out) or null,
// accumulate adds to y, row strides ldx / ldy (0 = dense). Large products are split over the GEMM pool.
void linear(const float* x, int64_t rows, const PackedWeight& w, const float* bias, float* y,
            bool accumulate = false, int64_t ldx = 0, int64_t ldy = 0);

}  // namespace pixelllm::cpu
