// Dense captioning over a backend (runtime/backend.h), as the reference `pixelllm_ref/proposal_head.py::
// dense_caption` does it (evaluate.py runs it with the region context "an object of" + eos):
//   fused features -> ProposalHeadBackend (heatmap, box regression) -> pipeline/nms.h (scores, boxes clipped to the
//   resized image, top-k, greedy NMS) -> every kept box as a prompt (prompt adapter visual tokens) -> greedy
//   caption with the request's context tokens (official rules, pipeline/decoding.h; the boxes side by side)
//   -> items sorted by rank = sqrt(max(proposal score, 0) * exp(caption score)), stable (the official
//   rescore_detections for greedy decoding), boxes mapped to original pixels.
#pragma once

#include <atomic>
#include <vector>

#include "core/json.h"
#include "pipeline/nms.h"
#include "pipeline/pipeline.h"
#include "pipeline/tasks.h"

namespace pixelllm::pipeline {

// The post-processing defaults of config.json "proposal_head" (present = the section exists).
struct DenseModel {
  bool present = false;
  int grid = 0;
  ProposalParams params;
  static DenseModel from_config(const core::Json& config);
};

// Box captions decoded side by side (run_dense): threads per dense call, this one included.
constexpr int kDenseCaptionThreads = 8;

// BACKEND_UNAVAILABLE without a proposal head (model or backend); INVALID_ARGUMENT / LIMIT_EXCEEDED /
// INVALID_TEXT on bad options; ABORTED when `cancel` is set (checked before every box and decoder step).
std::vector<DenseItem> run_dense(const TaskModel& m, const DenseModel& d, const ImageFeatures& f,
                                 const DenseOptions& options, const std::atomic<bool>& cancel);

}  // namespace pixelllm::pipeline
