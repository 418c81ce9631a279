// EVA02 ViT image encoder, the "git_visual_features" branch (official pixel_llm/modeling/eva02_vit.py::ViT as
// builder.get_image_encoder('eva02_vit') builds it, and pixel_llm.py::forward_backbones which drops the class
// token; reference: engines/reference/pixelllm_ref/eva02_encoder.py, EVA-02's own parameter names).
//
// normalised image (S, S, 3) NHWC -> patch conv (patch 14, VALID: G = floor(S / 14)) -> [cls, patches]
// + pos_embed (cls row + grid resized at conversion) -> optional ln_pre -> blocks:
//   x += proj(attn(LN1 x)) with q = x Wq + q_bias, k = x Wk, v = x Wv + v_bias (fused into one GEMM here),
//        2-D RoPE on the patch tokens of q and k (not on the class token), scale head_dim^-0.5;
//   x += w3(ffn_ln(silu(w1 x) * w2 x)) (SwiGLU with sub-LN, eps 1e-5; w1/w2 fused into one GEMM)
// -> optional ln_post -> drop the class token -> (G, G, hidden_size) NHWC.
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

struct Eva02EncoderConfig {
  int image_size = 0;
  int patch_size = 0;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int mlp_hidden_size = 0;
  bool use_abs_pos = true;
  bool use_ln_pre = false;
  bool use_ln_post = false;
  bool patch_bias = true;
  float layer_norm_eps = 1e-6f;
  float ffn_layer_norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  PixelNormalization pixels;

  int grid() const { return image_size / patch_size; }
  int head_dim() const { return hidden_size / num_attention_heads; }

  // Parses and checks the "eva02_encoder" section: MODEL_FORMAT for missing/mistyped keys, CONFIG_MISMATCH for
  // inconsistent values (head_dim not a multiple of 4 for the 2-D RoPE, patch larger than the image, ...).
  static Eva02EncoderConfig from_json(const core::JsonReader& section);
};

class Eva02Encoder {
 public:
  // Loads and packs every "<prefix>..." tensor, checking each shape against the config (CONFIG_MISMATCH) and
  // refusing missing (MODEL_FORMAT) or unexpected (CONFIG_MISMATCH) tensors under the prefix.
  // format: how the linear layers' weights are packed and multiplied (cpu/packed_linear.h; bf16_dot = bfloat16
  // compute, for encoderPrecision 'bf16').
  Eva02Encoder(const core::JsonReader& section, const core::SafeTensors& weights,
               const std::string& prefix = "eva02_encoder.", cpu::WeightFormat format = cpu::WeightFormat::f32);

  const Eva02EncoderConfig& config() const noexcept { return cfg_; }
  int grid() const noexcept { return cfg_.grid(); }
  int out_channels() const noexcept { return cfg_.hidden_size; }
  int64_t output_size() const noexcept { return int64_t(grid()) * grid() * cfg_.hidden_size; }

  // image: normalised (image_size, image_size, 3) NHWC; out: (grid, grid, hidden_size) NHWC, caller-provided.
  // Thread-safe (const, scratch is per call); GEMMs run on the calling thread, the rest on `pool`.
  void forward(const float* image, float* out, core::ThreadPool* pool = nullptr) const;
  // Multiply-add FLOPs (2 per multiply-add) of one image's matrix products, attention included: the cost model of
  // core::run_pair and the bench's GFLOP/s.
  double matmul_flops() const;

 private:
  struct Block {
    core::Tensor norm1_w, norm1_b, norm2_w, norm2_b;
    cpu::PackedWeight qkv_w;        // fused (3D, D), packed at load (cpu/packed_linear.h)
    core::Tensor qkv_b;             // (3D) = [q_bias, 0, v_bias]
    cpu::PackedWeight proj_w, w12_w, w3_w;  // (D, D); fused (2H, D): rows [w1; w2]; (D, H)
    core::Tensor proj_b, w12_b, ffn_ln_w, ffn_ln_b, w3_b;
  };

  Eva02EncoderConfig cfg_;
  cpu::PackedWeight patch_w_;       // (D, P*P*3) (cpu::patch_embed_weight)
  core::Tensor patch_b_;            // (D) or empty
  core::Tensor cls_token_;          // (D)
  core::Tensor pos_embed_;          // (1 + G*G, D) or empty
  core::Tensor ln_pre_w_, ln_pre_b_, ln_post_w_, ln_post_b_;
  core::Tensor rope_cos_, rope_sin_;  // (G*G, head_dim)
  std::vector<Block> blocks_;
};

}  // namespace pixelllm::model
