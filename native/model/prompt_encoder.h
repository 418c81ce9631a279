// SAM prompt encoder as PixelLLM drives it: box prompts only, no mask input. Official scenic
// baselines/segment_anything/modeling/prompt_encoder.py (PromptEncoder._embed_boxes/_embed_points,
// PositionEmbeddingRandom) and pixel_llm/modeling/pixel_llm.py (forward_prompt_encoder_adapter,
// forward_mask_decode); reference engines/reference/pixelllm_ref/prompt_encoder.py, whose names it reads:
//   prompt_encoder.shared_embedding.positional_embedding (2, E/2)   the Gaussian matrix G
//   prompt_encoder.point_embed.{0..3}.weight (1, E)                 0/1 = negative/positive point, 2/3 = box corners
//   prompt_encoder.not_a_point_embed.weight, no_mask_embed.weight (1, E)
//
// Random-Fourier encoding of a point xy in [0,1]^2: t = 2*pi * ((2 xy - 1) @ G); pe = [sin t, cos t] (E floats).
// Pixel coordinates are shifted by +0.5 and divided by the padded input size (config image_size), x by width.
//  - box (x0,y0,x1,y1) -> 2 tokens: pe(corner) + point_embed[2] / point_embed[3]
//  - adapter prompt (sparse_for_adapter): the box_points_per_side^2 grid points of the box (label 1:
//    pe + point_embed[1]) + one padding point (not_a_point_embed); when prompt_use_box_rate > 0 and the box is
//    valid (max coordinate > 0) instead the 2 box tokens followed by no_mask_embed up to the same length.
//  - dense PE of an h x w grid: pe((j + 0.5) / w, (i + 0.5) / h) per cell, row-major (h, w, E).
#pragma once

#include <cstdint>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"

namespace pixelllm::model {

struct PromptEncoderConfig {
  int embed_dim = 256;
  int num_point_embeddings = 4;
  int box_points_per_side = 2;
  bool box_point_with_offset = false;
  bool use_box = true;  // prompt_use_box_rate > 0 (the official inference keeps the box whenever it is valid)
  int image_size = 0;   // padded input size the coordinates are normalised by (top-level image_size)

  // From config.json: the "prompt_encoder" section + top-level image_size. MODEL_FORMAT for missing/mistyped keys,
  // CONFIG_MISMATCH for unsupported values (odd embed_dim, fewer than 4 point embeddings, a box prompt that does
  // not fit the point-prompt length).
  static PromptEncoderConfig from_json(const core::Json& config);
};

class PromptEncoder {
 public:
  // Loads and shape-checks every "prompt_encoder." tensor (CONFIG_MISMATCH on a shape or an unexpected tensor).
  PromptEncoder(const core::Json& config, const core::SafeTensors& weights);
  PromptEncoder(const PromptEncoderConfig& config, const core::SafeTensors& weights);

  const PromptEncoderConfig& config() const noexcept { return cfg_; }
  int embed_dim() const noexcept { return cfg_.embed_dim; }
  // Tokens per prompt of sparse_for_adapter: box_points_per_side^2 + 1 (2 + 1 when box_points_per_side < 1).
  int adapter_tokens() const noexcept { return adapter_tokens_; }
  // The dense prompt added to every image cell (no_mask_embed), embed_dim floats.
  const float* no_mask_embed() const noexcept { return no_mask_.data(); }

  // Boxes are x0,y0,x1,y1 in pixels of the padded input. All methods are const and thread-safe.
  // box (4) -> out (2, E).
  void embed_box(const float* box, float* out) const;
  // boxes (P, 4) -> out (P, adapter_tokens(), E).
  void sparse_for_adapter(const float* boxes, int64_t prompts, float* out) const;
  // out (h, w, E).
  void dense_pe(int64_t h, int64_t w, float* out) const;

 private:
  // pe of a point already normalised to [0,1]^2 -> out (E).
  void fourier(float x01, float y01, float* out) const;

  PromptEncoderConfig cfg_;
  int adapter_tokens_ = 0;
  core::Tensor gauss_;                  // (2, E/2)
  std::vector<core::Tensor> point_;     // num_point_embeddings x (1, E)
  core::Tensor not_a_point_, no_mask_;  // (1, E)
  std::vector<float> grid_;             // (n*n, 2) box-relative grid points (utils.build_solid_grid)
};

}  // namespace pixelllm::model
