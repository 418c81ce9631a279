// Patch embedding: a convolution with stride == kernel and no padding (VALID), as im2col + GEMM on NHWC input.
// Output size is floor(H / kh) x floor(W / kw) (trailing rows/columns that do not fill a patch are dropped, as a
// VALID conv does, e.g. EVA02 384 / 14 -> 27).
#pragma once

#include <cstdint>

#include "cpu/packed_linear.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// Repacks a torch conv weight (Cout, Cin, kh, kw) to (Cout, kh, kw, Cin), the order im2col reads NHWC patches
// in. Do it once at load time.
void patch_embed_pack_weight(const float* torch_weight, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw,
                             float* packed);

// The conv weight as the GEMM of patch_embed reads it: patch_embed_pack_weight's order, then packed into 16-output
// panels (cpu/packed_linear.h). Once, at load time.
PackedWeight patch_embed_weight(const float* torch_weight, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw,
                                WeightFormat format = WeightFormat::f32);

// x (B, H, W, Cin) NHWC, weight from patch_embed_weight ((Cout, kh*kw*Cin)), bias (Cout) or null
// -> out (B, H/kh, W/kw, Cout). `scratch` holds the im2col matrix: (B * H/kh * W/kw) * kh*kw*Cin floats
// (patch_embed_scratch_size).
void patch_embed(const float* x, int64_t batch, int64_t height, int64_t width, int64_t c_in, const PackedWeight& w,
                 const float* bias, int64_t kh, int64_t kw, float* scratch, float* out,
                 core::ThreadPool* pool = nullptr);
int64_t patch_embed_scratch_size(int64_t batch, int64_t height, int64_t width, int64_t c_in, int64_t kh, int64_t kw);

}  // namespace pixelllm::cpu
