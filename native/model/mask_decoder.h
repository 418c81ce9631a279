// SAM mask decoder, the `mask_decoder` component. Official scenic baselines/segment_anything/modeling/
// mask_decoder.py (MaskDecoder.predict_masks) as pixel_llm.py forward_mask_decode / decode_mask drive it;
// reference engines/reference/pixelllm_ref/mask_decoder.py (Hugging Face SamMaskDecoder names, prefix
// "mask_decoder."):
//   tokens = [iou_token (1) ; mask_tokens (num_multimask_outputs + 1) ; sparse prompt tokens]
//   src = image (h, w, 256) + dense prompt (no_mask_embed);  hs, keys = TwoWayTransformer(src, dense PE, tokens)
//   up = GELU(conv_t2(GELU(LN2d_1e-6(conv_t1(keys)))))   two ConvTranspose2d k2 s2: 256 -> 64 -> 32 ch, 4h x 4w
//   mask_m = hyper_mlp_m(hs[1 + m]) . up  (3-layer ReLU MLPs -> 32)      iou = iou_prediction_head(hs[0])
//   multimask_output false (PixelLLM): mask token 0 and its IoU; true: tokens 1..num_multimask_outputs.
// The official decode_mask then keeps the mask with the highest predicted IoU (trivial for a single mask).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "model/two_way_transformer.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct MaskDecoderConfig {
  int transformer_dim = 256;
  int depth = 2;
  int num_heads = 8;   // official TwoWayTransformer defaults (optional keys num_heads / mlp_dim)
  int mlp_dim = 2048;
  int num_multimask_outputs = 3;
  int iou_head_depth = 3;
  int iou_head_hidden_dim = 256;
  bool multimask_output = false;

  // The "mask_decoder" section. MODEL_FORMAT for missing/mistyped keys, CONFIG_MISMATCH for bad sizes.
  static MaskDecoderConfig from_json(const core::Json& config);
};

class MaskDecoder {
 public:
  // Loads and shape-checks every "mask_decoder." tensor (CONFIG_MISMATCH / MODEL_FORMAT).
  MaskDecoder(const core::Json& config, const core::SafeTensors& weights);
  MaskDecoder(const MaskDecoderConfig& config, const core::SafeTensors& weights);

  const MaskDecoderConfig& config() const noexcept { return cfg_; }
  int dim() const noexcept { return cfg_.transformer_dim; }
  // Masks per prompt: 1, or num_multimask_outputs when multimask_output.
  int num_output_masks() const noexcept { return cfg_.multimask_output ? cfg_.num_multimask_outputs : 1; }

  // image (h, w, dim) NHWC (the SAM map), dense_pe (h, w, dim) (PromptEncoder::dense_pe of the same grid),
  // sparse (P, S, dim) prompt tokens, dense (dim) the dense prompt (PromptEncoder::no_mask_embed)
  // -> masks (P, num_output_masks, 4h, 4w) low-res logits, iou (P, num_output_masks). Const and reentrant.
  void forward(const float* image, int64_t h, int64_t w, const float* dense_pe, const float* sparse, int64_t prompts,
               int64_t sparse_tokens, const float* dense, float* masks, float* iou,
               core::ThreadPool* pool = nullptr) const;

 private:
  struct Mlp {  // SamFeedForward: proj_in, layers.*, proj_out with ReLU between
    std::vector<core::Tensor> w, b;
    std::vector<int64_t> out;
  };
  Mlp load_mlp(core::PrefixWeights& w, const std::string& name, int64_t in, int64_t hidden, int64_t out, int depth) const;
  // x (in) -> y (out); tmp holds 2 * max width floats.
  static void run_mlp(const Mlp& m, const float* x, int64_t in, float* y, float* tmp);

  MaskDecoderConfig cfg_;
  core::Tensor iou_token_, mask_tokens_;
  core::Tensor up1_w_, up1_b_, up_ln_w_, up_ln_b_, up2_w_, up2_b_;  // packed (C_in, 4 * C_out): column (dy, dx, o)
  std::vector<Mlp> hyper_;
  Mlp iou_head_;
  std::unique_ptr<TwoWayTransformer> transformer_;
};

}  // namespace pixelllm::model
