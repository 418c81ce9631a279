// The tasks over a backend (runtime/backend.h), backend-agnostic: caption / describe / refer through
// pipeline/decoding, masks through the mask decoder + pipeline/masks post-processing, segment = describe + mask.
// Follows the official PixelLlmModel.inference (scenic pixel_llm/modeling/pixel_llm.py) as the reference
// `pixelllm_ref/model.py::PixelLLM.inference` ports it:
//   prompt box   Caption/Refer: the whole resized image [0, 0, w, h]; Describe: the user's box (mapped to the
//                resized frame) -> prompt adapter visual tokens (the whole-image tokens are cached per image)
//   text         Caption/Describe: decoding (greedy | beam, official rules); Refer: the expression teacher-forced
//                after its "where is ..." context (with_cap=False)
//   box          the corners at the token before EOS (point_output_ignore '^end-1')
//   mask         prepare_text_features: the official full decoder pass over the cleaned, 0-padded token row
//                (TextDecoderBackend::forward) after the context 0-padded to the official row length (it matters
//                for T5: its rows from the EOS on attend uniformly to every encoder position), mask adapter + SAM mask decoder prompted with the box, then the
//                official evaluator's post-processing to the original size (pipeline/masks.h)
// Every Box in and out is in ORIGINAL image pixels; the model frame is only used inside.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/json.h"
#include "pipeline/image.h"
#include "pipeline/masks.h"
#include "pipeline/pipeline.h"
#include "runtime/backend.h"

namespace pixelllm::pipeline {

// Model constants the tasks need, read once from config.json (independent of the backend).
struct TaskModel {
  runtime::Backend* backend = nullptr;
  int image_size = 0, vocab_size = 0, max_caption_length = 0;
  int32_t bos = 0, eos = 0;
  int hidden_size = 0, num_points = 2;
  int feature_grid = 0, feature_channels = 0;   // fused features (G, G, C)
  int sam_grid = 0, sam_channels = 0;           // SAM features (g, g, 256)
  int visual_tokens = 0, visual_dim = 0;        // prompt adapter output per prompt (T, Dv)
  int mask_size = 0;                            // low-res mask side (4 g)
  int context_length = 0;                       // the official 0-padded context row length (config
                                                // "max_context_length", default max_caption_length)
  MaskResize mask_resize = MaskResize::Sam;     // low-res logits -> mask at the original size (masks.h)

  // MODEL_FORMAT / CONFIG_MISMATCH on a config without the sections or with unsupported values.
  static TaskModel from_config(const core::Json& config, runtime::Backend* backend);
};

// What a task saw on its way, for tests and debugging (filled when a trace is passed).
struct TaskTrace {
  std::vector<int32_t> mask_tokens;   // the token row whose states the mask decoder read
  std::vector<float> mask_logits;     // (mask_size, mask_size) low-res logits
  float iou = 0;
  Box model_box;                      // the mask's box prompt in the resized frame
};

// Visual tokens (T, Dv) for a box prompt in the RESIZED frame; whole_image uses (and fills) the per-image cache.
std::vector<float> visual_tokens(const TaskModel& m, const ImageFeatures& f, const Box& model_box, bool whole_image);

GenerateResult run_generate(const TaskModel& m, const ImageFeatures& f, const GenerateRequest& request,
                            const std::function<void(const TokenEvent&)>& on_token, const std::atomic<bool>& cancel,
                            TaskTrace* trace = nullptr);

MaskResult run_segment(const TaskModel& m, const ImageFeatures& f, const Box& box, const std::atomic<bool>& cancel,
                       TaskTrace* trace = nullptr);

// Validates a box in original pixels (finite, non-empty, inside the image): INVALID_BOX otherwise.
void check_box(const Box& box, const ImageGeometry& g);

// Debug entry: Pipeline::generate with a trace (INVALID_ARGUMENT when `pipeline` is not the implementation
// pipeline.cc makes).
GenerateResult generate_traced(Pipeline& pipeline, const ImageFeatures& features, const GenerateRequest& request,
                               const std::atomic<bool>& cancel, TaskTrace& trace);

}  // namespace pixelllm::pipeline
