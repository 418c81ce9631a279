// SAM ViT image encoder, the "sam_visual_features" branch (official
// baselines/segment_anything/modeling/image_encoder.py::ImageEncoderViT as pixel_llm/modeling/builder.py builds it;
// reference: engines/reference/pixelllm_ref/sam_image_encoder.py, Hugging Face SamVisionEncoder names).
//
// normalised image (S, S, 3) NHWC -> patch conv 16 (+bias) -> + pos_embed (already resized to the token grid
// at conversion) -> blocks [x += proj(attn(LN1 x)); x += lin2(gelu_erf(lin1(LN2 x)))] where attention is
// windowed (window_size, zero-padded bottom/right after LN1; padded tokens take part as keys) in the blocks not
// listed in global_attn_indexes and global otherwise, both with decomposed relative positions
// -> neck: conv1x1 (no bias) -> LN2d -> conv3x3 pad 1 (no bias) -> LN2d -> (G, G, output_channels) NHWC.
// The official window padding swaps pad_h/pad_w; it is harmless on the square grids this class accepts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"
#include "model/preprocess.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct SamImageEncoderConfig {
  int image_size = 0;
  int patch_size = 0;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int mlp_dim = 0;
  int output_channels = 0;
  bool qkv_bias = true;
  bool use_abs_pos = true;
  bool use_rel_pos = true;
  int window_size = 0;
  std::vector<int> global_attn_indexes;
  float layer_norm_eps = 1e-6f;
  PixelNormalization pixels;

  int grid() const { return image_size / patch_size; }
  int head_dim() const { return hidden_size / num_attention_heads; }
  bool is_global(int layer) const;

  // Parses and checks the "sam_image_encoder" section: MODEL_FORMAT for missing/mistyped keys, CONFIG_MISMATCH for
  // inconsistent or unsupported values (hidden_act other than "gelu", heads not dividing hidden_size, ...).
  static SamImageEncoderConfig from_json(const core::JsonReader& section);
};

class SamImageEncoder {
 public:
  // Loads and packs every "<prefix>..." tensor, checking each shape against the config (CONFIG_MISMATCH) and
  // refusing missing (MODEL_FORMAT) or unexpected (CONFIG_MISMATCH) tensors under the prefix.
  // format: how the linear layers' weights are packed and multiplied (cpu/packed_linear.h; bf16_dot = bfloat16
  // compute, for encoderPrecision 'bf16').
  SamImageEncoder(const core::JsonReader& section, const core::SafeTensors& weights,
                  const std::string& prefix = "sam_image_encoder.", cpu::WeightFormat format = cpu::WeightFormat::f32);

  const SamImageEncoderConfig& config() const noexcept { return cfg_; }
  int grid() const noexcept { return cfg_.grid(); }
  int out_channels() const noexcept { return cfg_.output_channels; }
  // Floats of the output buffer: grid * grid * output_channels.
  int64_t output_size() const noexcept { return int64_t(grid()) * grid() * cfg_.output_channels; }

  // image: normalised (image_size, image_size, 3) NHWC (see preprocess.h); out: (grid, grid, output_channels)
  // NHWC, caller-provided. Thread-safe (const, scratch is per call); GEMMs run on the calling thread, the rest
  // on `pool`.
  void forward(const float* image, float* out, core::ThreadPool* pool = nullptr) const;
  // Multiply-add FLOPs (2 per multiply-add) of one image's matrix products, attention included: the cost model of
  // core::run_pair and the bench's GFLOP/s.
  double matmul_flops() const;

 private:
  struct Layer {
    core::Tensor ln1_w, ln1_b, ln2_w, ln2_b;
    cpu::PackedWeight qkv_w, proj_w;             // (3D, D), (D, D), packed at load (cpu/packed_linear.h)
    core::Tensor qkv_b, proj_b;                  // (3D) | empty, (D)
    core::Tensor rel_h, rel_w;                   // gathered (span, span, head_dim), span = window or grid
    cpu::PackedWeight lin1_w, lin2_w;
    core::Tensor lin1_b, lin2_b;
    int window = 0;                              // 0 = global
  };

  void attention_block(const Layer& L, float* x, float* xn, float* qkv, float* attn, float* rel_h, float* rel_w,
                       core::ThreadPool* pool) const;

  SamImageEncoderConfig cfg_;
  cpu::PackedWeight patch_w_;        // (D, 16*16*3) (cpu::patch_embed_weight)
  core::Tensor patch_b_;             // (D)
  core::Tensor pos_embed_;           // (G*G, D) or empty
  std::vector<Layer> layers_;
  cpu::PackedWeight neck_conv1_;                     // (C, D)
  core::Tensor neck_ln1_w_, neck_ln1_b_;
  cpu::PackedWeight neck_conv2_;                     // (C, 3*3*C) in im2col order
  core::Tensor neck_ln2_w_, neck_ln2_b_;
};

}  // namespace pixelllm::model
