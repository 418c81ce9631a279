// Proposal head, the `proposal_head` component: a one-level, class-agnostic CenterNet first stage on the fused
// feature map (dense captioning proposals).
//
// Follows `engines/reference/pixelllm_ref/proposal_head.py` (ProposalHead), which keeps the official
// `pixel_llm/modeling/box_decoder.py` FpnCenterNet2 pieces on one level: the scale-1.0 branch of vitdet's
// SimpleFeaturePyramid and the head of `baselines/centernet/modeling/centernet_head.py`. Names it reads:
//   proposal_head.fpn.conv1.weight (ch, C, 1, 1)      no bias     -> LayerNorm over channels (fpn.norm1.*)
//   proposal_head.fpn.conv2.weight (ch, ch, 3, 3)     no bias     -> LayerNorm (fpn.norm2.*)
//   proposal_head.tower.{3i}.{weight,bias} conv3x3 -> tower.{3i+1}.{weight,bias} GroupNorm(num_groups) -> ReLU
//   proposal_head.bbox_pred.{weight,bias} (4, ch, 3, 3), proposal_head.scale (1):  relu(scale * conv) = l,t,r,b
//   proposal_head.agn_hm.{weight,bias} (1, ch, 3, 3): the heatmap logit
// Convolutions are zero-padded 'same' (padding 1 for 3x3), NHWC here; weights are repacked once at load into
// (out, ky, kx, in) rows so a 3x3 conv is an im2col + one GEMM. bbox_pred and agn_hm share one GEMM.
// Post-processing (scores, boxes, NMS) lives in pipeline/nms.h.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

// config.json "proposal_head" (pixelllm_ref.proposal_head.config_from_official).
struct ProposalHeadConfig {
  int input_dim = 0, grid_size = 0, stride = 0, channels = 0, num_convs = 0, num_groups = 32;
  float layer_norm_eps = 1e-6f, group_norm_eps = 1e-6f;
  // Post-processing defaults (pipeline/nms.h).
  int pre_nms_topk = 100;
  float iou_threshold = 0.5f, score_threshold = 0.05f;
  int max_detections = 16;

  // MODEL_FORMAT / CONFIG_MISMATCH on missing or invalid values (channels not divisible by num_groups).
  static ProposalHeadConfig from_json(const core::JsonReader& section);
};

class ProposalHead {
 public:
  ProposalHead(const ProposalHeadConfig& config, const core::SafeTensors& weights);
  // section = JsonReader(config, "config.json").object("proposal_head")
  static std::unique_ptr<ProposalHead> load(const core::JsonReader& section, const core::SafeTensors& weights);

  const ProposalHeadConfig& config() const noexcept { return cfg_; }

  // Floats of scratch forward() needs for an h x w map.
  size_t scratch_floats(int h, int w) const noexcept;
  // features (h, w, input_dim) NHWC -> heatmap (h, w) logits, box_regs (h, w, 4) l,t,r,b >= 0 in stride units.
  void forward(const float* features, int h, int w, float* heatmap, float* box_regs, float* scratch,
               core::ThreadPool* pool = nullptr) const;
  // Convenience overload that allocates its scratch.
  void forward(const float* features, int h, int w, float* heatmap, float* box_regs,
               core::ThreadPool* pool = nullptr) const;

 private:
  void conv3x3(const float* x, int h, int w, int in, const core::Tensor& packed, const float* bias, int out,
               float* y, float* cols) const;
  void group_norm_relu(float* x, int hw, const core::Tensor& gamma, const core::Tensor& beta) const;

  ProposalHeadConfig cfg_;
  core::Tensor conv1_, norm1_g_, norm1_b_, conv2_, norm2_g_, norm2_b_;
  std::vector<core::Tensor> tower_w_, tower_b_, gn_g_, gn_b_;
  core::Tensor head_w_, head_b_;   // (5, 9 ch): rows 0..3 bbox_pred, row 4 agn_hm
  float scale_ = 1.f;
};

}  // namespace pixelllm::model
