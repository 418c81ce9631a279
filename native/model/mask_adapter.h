// PixelLLM mask adapter: refines the SAM box-prompt tokens with the language model's states before the SAM mask
// decoder. Official scenic pixel_llm/modeling/mask_adapter.py (SamMaskAdaptor) as called by pixel_llm.py
// forward_mask_decode(sparse = box corner embeddings, visual = the visual tokens the LLM saw (after the optional
// T5 projection), text = the LLM's last hidden states); reference engines/reference/pixelllm_ref/mask_adapter.py,
// whose names it reads (prefix "mask_adapter."):
//   v = visual_projection_mlp.layers.0(LN_1e-6(visual)) ; t = textual_projection_mlp.layers.0(LN_1e-6(text))
//   out, _ = TwoWayTransformer(depth, 256)(image = [v ; t] as a sequence, pe = 0, tokens = output_tokens)
//   sparse' = tanh(alpha_output) * out + sparse          (gating; without gating out + sparse)
// Official quirk kept: there is NO padding mask. Every text position handed in (padding after EOS included) and
// every visual token is attended, so to reproduce the official numbers pass the full text row the official code
// has (max_caption_length positions of the cleaned, 0-padded tokens).
#pragma once

#include <cstdint>
#include <memory>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "model/two_way_transformer.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct MaskAdapterConfig {
  int depth = 2;
  int transformer_dim = 256;
  int num_heads = 8;   // official TwoWayTransformer defaults (optional keys num_heads / mlp_dim)
  int mlp_dim = 2048;
  int num_outputs = 2;  // = the box prompt's 2 corner tokens it is added to
  bool gating = true;
  int visual_dim = 0;
  int text_dim = 0;

  // The "mask_adapter" section. MODEL_FORMAT for missing/mistyped keys, CONFIG_MISMATCH for bad sizes.
  static MaskAdapterConfig from_json(const core::Json& config);
};

class MaskAdapter {
 public:
  // Loads and shape-checks every "mask_adapter." tensor (CONFIG_MISMATCH / MODEL_FORMAT).
  MaskAdapter(const core::Json& config, const core::SafeTensors& weights);
  MaskAdapter(const MaskAdapterConfig& config, const core::SafeTensors& weights);

  const MaskAdapterConfig& config() const noexcept { return cfg_; }
  int num_outputs() const noexcept { return cfg_.num_outputs; }
  int dim() const noexcept { return cfg_.transformer_dim; }

  // sparse (P, num_outputs, dim) box tokens, visual (P, visual_len, visual_dim), text (P, text_len, text_dim)
  // -> out (P, num_outputs, dim) (may alias sparse). Const and reentrant.
  void forward(const float* sparse, int64_t prompts, const float* visual, int64_t visual_len, const float* text,
               int64_t text_len, float* out, core::ThreadPool* pool = nullptr) const;

 private:
  MaskAdapterConfig cfg_;
  core::Tensor output_tokens_, gate_;  // (O, dim); tanh(alpha_output) (O, dim) | empty
  core::Tensor v_ln_w_, v_ln_b_, v_w_, v_b_, t_ln_w_, t_ln_b_, t_w_, t_b_;
  std::unique_ptr<TwoWayTransformer> transformer_;
};

}  // namespace pixelllm::model
