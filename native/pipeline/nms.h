// Proposal post-processing for dense captioning: heatmap + box regression maps -> scored boxes -> greedy NMS.
//
// An exact port of `engines/reference/pixelllm_ref/proposal_head.py::postprocess` (which follows the official
// centernet_utils.get_grid, box_decoder.py clip_boxes and nms.py `_bbox_overlap`), float32 arithmetic in the same
// order:
//   score_i = sigmoid(heatmap_i) for every cell i (row-major); cell centre gx = col*s + s/2 (integer), gy likewise;
//   box_i = (gx - l*s, gy - t*s, gx + r*s, gy + b*s) clipped to [0, valid_w] x [0, valid_h] of the resized image;
//   the pre_nms_topk best cells (descending score, ties: lower cell first), cells with score < score_threshold
//   dropped; greedy NMS in that order (a box is suppressed when its IoU with a kept box is >= iou_threshold,
//   IoU = inter / (area_a + area_b - inter + 1e-8)); at most max_detections kept.
#pragma once

#include <vector>

#include "pipeline/pipeline.h"

namespace pixelllm::pipeline {

struct ProposalParams {
  int stride = 0;               // pixels per grid cell (config proposal_head.stride)
  int pre_nms_topk = 100;
  float score_threshold = 0.05f;
  float iou_threshold = 0.5f;
  int max_detections = 16;
};

struct Proposal {
  Box box;        // pixels of the resized (unpadded) image
  float score = 0;
  int cell = 0;   // row-major grid index it came from
};

// IoU with the official nms.py epsilon (float32, the reference's operation order).
float box_iou(const Box& a, const Box& b);

// Greedy NMS over `boxes` already in descending score order: the kept indices, in order (at most max_keep).
std::vector<int> nms(const std::vector<Box>& boxes, float iou_threshold, int max_keep);

// heatmap (h, w) logits, box_regs (h, w, 4) l,t,r,b in stride units; valid_h/valid_w = the resized image inside
// the padded frame. Returns the kept proposals, best first. INVALID_ARGUMENT on bad sizes or parameters.
std::vector<Proposal> decode_proposals(const float* heatmap, const float* box_regs, int h, int w, float valid_h,
                                       float valid_w, const ProposalParams& params);

}  // namespace pixelllm::pipeline
