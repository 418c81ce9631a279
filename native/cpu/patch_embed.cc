#include "cpu/patch_embed.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"

namespace pixelllm::cpu {

void patch_embed_pack_weight(const float* w, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw, float* packed) {
  for (int64_t o = 0; o < c_out; ++o)
    for (int64_t c = 0; c < c_in; ++c)
      for (int64_t y = 0; y < kh; ++y)
        for (int64_t x = 0; x < kw; ++x)
          packed[((o * kh + y) * kw + x) * c_in + c] = w[((o * c_in + c) * kh + y) * kw + x];
}

int64_t patch_embed_scratch_size(int64_t batch, int64_t height, int64_t width, int64_t c_in, int64_t kh, int64_t kw) {
  return batch * (height / kh) * (width / kw) * kh * kw * c_in;
}

PackedWeight patch_embed_weight(const float* torch_weight, int64_t c_out, int64_t c_in, int64_t kh, int64_t kw,
                                WeightFormat format) {
  std::vector<float> gemm_order(static_cast<size_t>(c_out * c_in * kh * kw));
  patch_embed_pack_weight(torch_weight, c_out, c_in, kh, kw, gemm_order.data());
  return PackedWeight::pack(gemm_order.data(), c_out, c_in * kh * kw, format);
}

void patch_embed(const float* x, int64_t batch, int64_t height, int64_t width, int64_t c_in, const PackedWeight& w,
                 const float* bias, int64_t kh, int64_t kw, float* scratch, float* out, core::ThreadPool* pool) {
  PIXELLLM_CHECK(kh > 0 && kw > 0 && height >= kh && width >= kw, InvalidArgument,
                 "patch_embed: image smaller than one patch");
  PIXELLLM_CHECK(w.in() == kh * kw * c_in, InvalidArgument, "patch_embed: weight does not match the patch size");
  const int64_t gh = height / kh, gw = width / kw;
  const int64_t K = kh * kw * c_in;
  const int64_t row_len = kw * c_in;  // one kernel row of a patch is contiguous in NHWC
  core::parallel_for(pool, batch * gh, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / gh, py = r % gh;
      for (int64_t px = 0; px < gw; ++px) {
        float* dst = scratch + ((b * gh + py) * gw + px) * K;
        for (int64_t y = 0; y < kh; ++y) {
          const float* src = x + ((b * height + py * kh + y) * width + px * kw) * c_in;
          std::memcpy(dst + y * row_len, src, static_cast<size_t>(row_len) * sizeof(float));
        }
      }
    }
  });
  linear(scratch, batch * gh * gw, w, bias, out);
}

}  // namespace pixelllm::cpu
