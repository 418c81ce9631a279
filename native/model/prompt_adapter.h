// PixelLLM prompt adapter: fused image features + a box prompt -> the visual tokens the text decoder reads.
// Official scenic pixel_llm/modeling/prompt_adapter.py (PromptAdaptor) as driven by pixel_llm.py
// forward_prompt_encoder_adapter + maybe_project_visual_feature (layers.LinearProjectLayers); reference
// engines/reference/pixelllm_ref/prompt_adapter.py, whose names it reads (prefix "prompt_adapter."):
//   sparse, dense (no_mask_embed)  --prompt_embedding_projection_mlp-->  transformer_dim  (only when E != dim)
//   dense PE of the feature grid   --image_pe_projection_mlp-->         transformer_dim  (idem)
//   src = image_projection_mlp(features) + dense
//   hs, keys = TwoWayTransformer(depth, dim)(src, pe, [output_tokens (num_outputs) ; sparse tokens])
//   "sparse" fuse: token i = output_hypernetworks_mlps.i(hs[i]) (one Linear each) -> (num_outputs, output_dim)
//   "dense" fuse:  dense_output_mlp(keys) -> (h*w, output_dim)
//   T5 head only: visual_projection.0 (Linear output_dim -> visual_projection_dim) + visual_projection.1 (LN 1e-5)
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"
#include "model/two_way_transformer.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

class PromptEncoder;

struct PromptAdapterConfig {
  int depth = 2;
  int input_embedding_dim = 256;  // prompt encoder embed_dim
  int image_dim = 0;              // channels of the fused features
  int transformer_dim = 256;
  int num_heads = 8;              // official TwoWayTransformer defaults (optional keys num_heads / mlp_dim)
  int mlp_dim = 2048;
  int num_outputs = 32;
  int output_dim = 1024;
  bool dense_fuse = false;        // prompt_fuse_fn "dense" (else "sparse")
  int visual_projection_dim = 0;  // 0 = none
  bool visual_projection_ln = true;

  // The "prompt_adapter" section. MODEL_FORMAT for missing/mistyped keys, CONFIG_MISMATCH for unknown
  // prompt_fuse_fn or inconsistent sizes.
  static PromptAdapterConfig from_json(const core::Json& config);
};

class PromptAdapter {
 public:
  // Loads and shape-checks every "prompt_adapter." tensor (CONFIG_MISMATCH on a wrong shape or an unexpected
  // tensor, MODEL_FORMAT when one is missing).
  PromptAdapter(const core::Json& config, const core::SafeTensors& weights);
  PromptAdapter(const PromptAdapterConfig& config, const core::SafeTensors& weights);

  const PromptAdapterConfig& config() const noexcept { return cfg_; }
  // Visual tokens per prompt: num_outputs ("sparse" fuse) or h * w ("dense" fuse).
  int64_t tokens_per_prompt(int64_t h, int64_t w) const noexcept;
  // Width of a visual token: visual_projection_dim when configured, else output_dim.
  int token_dim() const noexcept;

  // features (h, w, image_dim) NHWC, sparse (P, T, input_embedding_dim) prompt tokens, dense_pe (h, w,
  // input_embedding_dim), dense (input_embedding_dim) -> out (P, tokens_per_prompt, token_dim). Caller buffers;
  // const and reentrant (scratch is per call).
  void forward(const float* features, int64_t h, int64_t w, const float* sparse, int64_t prompts, int64_t tokens,
               const float* dense_pe, const float* dense, float* out, core::ThreadPool* pool = nullptr) const;

  // The whole forward_prompt_encoder_adapter: boxes (P, 4) x0,y0,x1,y1 in pixels of the padded input (an all-zero
  // box = the point-grid fallback of the official code) -> out (P, tokens_per_prompt, token_dim).
  // CONFIG_MISMATCH when the encoder's embed_dim differs from input_embedding_dim.
  void visual_tokens(const PromptEncoder& encoder, const float* features, int64_t h, int64_t w, const float* boxes,
                     int64_t prompts, float* out, core::ThreadPool* pool = nullptr) const;

 private:
  PromptAdapterConfig cfg_;
  core::Tensor output_tokens_;                // (num_outputs, dim)
  cpu::PackedWeight image_w_;                 // (dim, image_dim), packed once at load (cpu/packed_linear.h)
  core::Tensor image_b_;
  cpu::PackedWeight prompt_w_;                // (dim, E) | empty
  core::Tensor prompt_b_;
  cpu::PackedWeight pe_w_;                    // (dim, E) | empty
  core::Tensor pe_b_;
  core::Tensor hyper_w_, hyper_b_;            // (num_outputs, output_dim, dim), (num_outputs, output_dim)
  cpu::PackedWeight dense_out_w_;             // (output_dim, dim)
  core::Tensor dense_out_b_;
  cpu::PackedWeight proj_w_;
  core::Tensor proj_b_, proj_ln_w_, proj_ln_b_;
  std::unique_ptr<TwoWayTransformer> transformer_;
};

}  // namespace pixelllm::model
