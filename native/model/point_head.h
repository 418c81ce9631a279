// Point head, the `point_head` component: per-token corners from the text decoder's hidden states.
//
// Follows the official scenic `pixel_llm/modeling/point_predictor.py` (MlpPointPredictor) and `pixel_llm.py`
// (forward_point_prediction, utils.points_to_absolute) through `engines/reference/pixelllm_ref/point_head.py`,
// whose names it reads (`point_head.layer_norm.*` when pre_norm, `point_head.mlp.layers.N.{weight,bias}`):
//   out = MLP(LN_1e-6(h))  (depth Dense layers, exact GELU or ReLU between them), reshaped (P, 3 + C);
//   corners = (out[..., :2] + 1) / 2 * (w, h) of the UNPADDED image; logits = out[..., 2:].
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"

namespace pixelllm::model {

struct PointHeadConfig {
  int input_dim = 0, hidden_dim = 0, depth = 0, num_points = 0, num_classes = 1;
  bool pre_norm = false;
  bool gelu = true;  // false = relu
  float layer_norm_eps = 1e-6f;
  std::string point_output_ignore;  // official '^end-1' (the corners of the token before EOS make the box)

  static PointHeadConfig from_json(const core::JsonReader& section);
};

class PointHead {
 public:
  PointHead(const PointHeadConfig& config, const core::SafeTensors& weights);
  // section = JsonReader(config, "config.json").object("point_head")
  static std::unique_ptr<PointHead> load(const core::JsonReader& section, const core::SafeTensors& weights);

  const PointHeadConfig& config() const noexcept { return cfg_; }
  int input_dim() const noexcept { return cfg_.input_dim; }
  int num_points() const noexcept { return cfg_.num_points; }
  int logits_per_point() const noexcept { return cfg_.num_classes + 1; }

  // Floats of scratch predict() needs for `rows` rows.
  size_t scratch_floats(int rows) const noexcept;
  // hidden (rows, input_dim) -> corners (rows, num_points, 2) xy in pixels of an image_width x image_height
  // (unpadded) image; logits (rows, num_points, num_classes + 1) or null. `scratch` holds scratch_floats(rows).
  void predict(const float* hidden, int rows, float image_width, float image_height, float* corners, float* logits,
               float* scratch) const;
  // predict() in two halves, for rows of several images at once (the step batcher): mlp() runs the LN + MLP over
  // `rows` (scratch as predict) and returns its (rows, mlp_outputs()) result, which lives in `scratch`;
  // to_corners() scales rows of it to one image (corners or logits may be null).
  const float* mlp(const float* hidden, int rows, float* scratch) const;
  int mlp_outputs() const noexcept { return out_dim_; }
  void to_corners(const float* mlp_out, int rows, float image_width, float image_height, float* corners,
                  float* logits) const;
  // Convenience overload that allocates its scratch (not for per-token loops).
  void predict(const float* hidden, int rows, float image_width, float image_height, float* corners,
               float* logits) const;

 private:
  PointHeadConfig cfg_;
  core::Tensor ln_g_, ln_b_;
  std::vector<cpu::PackedWeight> w_;  // packed once at load (cpu/packed_linear.h)
  std::vector<core::Tensor> b_;
  int out_dim_ = 0;
};

}  // namespace pixelllm::model
