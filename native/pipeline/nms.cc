#include "pipeline/nms.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/error.h"

namespace pixelllm::pipeline {

float box_iou(const Box& a, const Box& b) {
  const float w = std::max(std::min(a.x1, b.x1) - std::max(a.x0, b.x0), 0.f);
  const float h = std::max(std::min(a.y1, b.y1) - std::max(a.y0, b.y0), 0.f);
  const float inter = w * h;
  const float area_a = (a.x1 - a.x0) * (a.y1 - a.y0);
  const float area_b = (b.x1 - b.x0) * (b.y1 - b.y0);
  const float denom = area_a + area_b - inter + 1e-8f;
  return inter / denom;
}

std::vector<int> nms(const std::vector<Box>& boxes, float iou_threshold, int max_keep) {
  std::vector<int> keep;
  std::vector<char> suppressed(boxes.size(), 0);
  for (size_t i = 0; i < boxes.size() && static_cast<int>(keep.size()) < max_keep; ++i) {
    if (suppressed[i]) continue;
    keep.push_back(static_cast<int>(i));
    for (size_t j = i + 1; j < boxes.size(); ++j)
      if (!suppressed[j] && box_iou(boxes[i], boxes[j]) >= iou_threshold) suppressed[j] = 1;
  }
  return keep;
}

std::vector<Proposal> decode_proposals(const float* heatmap, const float* box_regs, int h, int w, float valid_h,
                                       float valid_w, const ProposalParams& p) {
  using core::ErrorCode;
  PIXELLLM_CHECK(h >= 1 && w >= 1 && p.stride >= 1, InvalidArgument, "proposals: empty grid or stride < 1");
  PIXELLLM_CHECK(p.pre_nms_topk >= 1 && p.max_detections >= 1, InvalidArgument,
                 "proposals: pre_nms_topk and max_detections must be >= 1");
  PIXELLLM_CHECK(std::isfinite(p.score_threshold) && std::isfinite(p.iou_threshold) && valid_h > 0 && valid_w > 0,
                 InvalidArgument, "proposals: thresholds must be finite and the valid image non-empty");
  const int n = h * w;
  const float s = static_cast<float>(p.stride);
  const float half = static_cast<float>(p.stride / 2);
  std::vector<float> scores(n);
  for (int i = 0; i < n; ++i) scores[i] = 1.f / (1.f + std::exp(-heatmap[i]));
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  order.resize(std::min(n, p.pre_nms_topk));
  std::vector<Box> boxes;
  std::vector<int> cells;
  for (int i : order) {
    if (!(scores[i] >= p.score_threshold)) continue;
    const float gx = static_cast<float>(i % w) * s + half, gy = static_cast<float>(i / w) * s + half;
    const float* r = box_regs + static_cast<size_t>(i) * 4;
    Box b{gx - r[0] * s, gy - r[1] * s, gx + r[2] * s, gy + r[3] * s};
    b.x0 = std::clamp(b.x0, 0.f, valid_w);
    b.y0 = std::clamp(b.y0, 0.f, valid_h);
    b.x1 = std::clamp(b.x1, 0.f, valid_w);
    b.y1 = std::clamp(b.y1, 0.f, valid_h);
    boxes.push_back(b);
    cells.push_back(i);
  }
  std::vector<Proposal> out;
  for (int k : nms(boxes, p.iou_threshold, p.max_detections)) out.push_back({boxes[k], scores[cells[k]], cells[k]});
  return out;
}

}  // namespace pixelllm::pipeline
