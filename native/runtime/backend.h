// The backend interface: one abstract class per component kind. The CPU backend (native/runtime/cpu, over
// native/model) and the TensorRT backend (native/runtime/tensorrt, over the reference's ONNX exports) implement it;
// native/pipeline drives it and never knows which one runs.
//
// Component kinds and their tensors (host memory, float32 row-major unless said otherwise; the same layouts as the
// reference `pixelllm_ref/export_onnx.py` graphs, whose I/O names are given in brackets):
//   ImageEncoderBackend   images (B,S,S,3) 0..255 padded [images], padding_mask (B,S,S) 1 = valid [padding_mask]
//                         -> fused features (B,G,G,C) [features], SAM features (B,g,g,256) [sam_features]
//   PromptAdapterBackend  features (B,G,G,C), boxes (B,P,4) px of the padded image -> visual tokens (B,P,T,Dv)
//   TextDecoderBackend    per request a DecoderSession: prefill (visual + context + first text tokens, all rows
//                         share them) then one step per token with the fused point head; KV cache kept by the
//                         session (device-resident for TensorRT)
//   MaskDecoderBackend    SAM features, boxes (B,P,4), visual tokens (B,P,T,Dv), text states (B,P,L,D)
//                         -> low-res mask logits (B,P,4g,4g), IoU (B,P)
//   ProposalHeadBackend   fused features (B,G,G,C) [features] -> heatmap (B,G,G) logits [heatmap], box_regs
//                         (B,G,G,4) l,t,r,b >= 0 in stride units [box_regs] (pixelllm_ref.proposal_head.ProposalHead;
//                         scores, boxes and NMS are the pipeline's: pipeline/nms.h)
// Thread-safety: the component objects are shared by every request of a Pipeline and must accept concurrent calls;
// a DecoderSession belongs to one request (one thread at a time).
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace pixelllm::runtime {

class ImageEncoderBackend {
 public:
  virtual ~ImageEncoderBackend() = default;
  virtual void encode(const float* images, const float* padding_mask, int batch, float* features,
                      float* sam_features) = 0;
};

class PromptAdapterBackend {
 public:
  virtual ~PromptAdapterBackend() = default;
  virtual void visual_tokens(const float* features, int batch, const float* boxes, int prompts, float* tokens) = 0;
};

// Where a prefill / step writes; any pointer may be null (that output is skipped). Per row r and text position j:
// logits (rows, n, V), hidden (rows, n, D), corners (rows, n, K, 2) absolute px of the unpadded image,
// point_logits (rows, n, K, C+1); a step has n = 1.
struct DecoderOutputs {
  float* logits = nullptr;
  float* hidden = nullptr;
  float* corners = nullptr;
  float* point_logits = nullptr;
};

struct DecoderLimits {
  int max_rows = 1;      // sequences decoded together (beams)
  int max_context = 16;  // context tokens of the prefix (>= 1: "no context" is one 0 token)
  int max_text = 40;     // text positions (prefill tokens + steps)
};

// Greedy decoding on the backend (official rules: the previous token's logit is capped at -1e4; a row that has
// emitted eos keeps emitting eos with log-prob 0). Backends without a fast path use the default implementation.
struct GreedyStep {
  std::vector<int32_t> tokens;   // (rows) chosen tokens
  std::vector<float> logprobs;   // (rows) their log-probabilities
  std::vector<float> corners;    // (rows, K, 2) the point head at the fed position
};

class DecoderSession {
 public:
  virtual ~DecoderSession() = default;

  // visual (rows, T, Dv) [visual_tokens]; context (rows, n_context) ids, 0 = padding [context_tokens];
  // text (rows, n_text) ids fed at positions 0..n_text-1 [text_tokens] (n_text >= 1, usually [bos]);
  // image_hw (rows, 2) valid (h, w) of the image in the padded frame [image_hw]. Resets the session.
  // LIMIT_EXCEEDED beyond the session limits; INVALID_TEXT for ids outside the vocabulary.
  virtual void prefill(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text,
                       int n_text, const float* image_hw, const DecoderOutputs& out) = 0;
  // Feeds tokens[r] to row r at position(); then position() advances by one.
  virtual void step(const int32_t* tokens, const DecoderOutputs& out) = 0;
  // Beam search: row r := old row parents[r].
  virtual void reorder(const int32_t* parents) = 0;
  virtual int position() const = 0;
  virtual int rows() const = 0;

  // Feeds `tokens` (as step) and picks the next token per row greedily from the logits of this step.
  // `previous` = the token fed (for the repeat cap); `finished[r]` != 0 forces eos with log-prob 0.
  virtual GreedyStep step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id);

  // Greedy decoding's steady state, driven by the backend: feeds `feed` (rows tokens) as step_greedy does, then
  // calls next(step, feed) with the step's picks and corners; `next` writes the tokens to feed next into `feed`
  // and returns true to go on, false to stop. At most max_steps steps; the last of them computes no logits (its
  // step.tokens are eos_id, logprobs 0: only its corners are meant). `cancel` is checked before every step after
  // the first (ABORTED); the caller checks it before. What `next` throws ends the loop and is rethrown here.
  // `next` runs on a backend thread that may not be the caller's (the CPU backend's batching leader advances
  // every concurrent greedy loop itself), never concurrently with itself; the caller is blocked meanwhile.
  // The hidden states (n_text, D) of the official teacher-forced pass over `text` (TextDecoderBackend::forward
  // with this session's visual tokens and context, the context's trailing padding included), computed by
  // continuing this session: `text` starts with the tokens row 0 was fed since the prefill, and only the rest is
  // run. Returns false, changing nothing, when the backend cannot (a decoder whose full pass is not its steps, as
  // T5's; beams reordered; the session's limits too small; `text` not starting with the tokens fed); the caller
  // then runs forward(). Default: false.
  virtual bool continue_text_states(const int32_t* text, int n_text, float* hidden) {
    (void)text;
    (void)n_text;
    (void)hidden;
    return false;
  }

  using GreedyNext = std::function<bool(const GreedyStep& step, int32_t* feed)>;
  virtual void run_greedy(int32_t* feed, int max_steps, int32_t eos_id, const GreedyNext& next,
                          const std::atomic<bool>& cancel);

 protected:
  // For the default step_greedy: sizes of one row's logits and corners.
  virtual int vocab_size() const = 0;
  virtual int corner_values() const = 0;   // K * 2
};

class TextDecoderBackend {
 public:
  virtual ~TextDecoderBackend() = default;
  virtual std::unique_ptr<DecoderSession> new_session(const DecoderLimits& limits) const = 0;

  // The official teacher-forced pass over a whole token row (PixelLlmModel.prepare_text_features: decoder.forward
  // on the cleaned, 0-padded tokens with the official masks on EVERY position; the mask adapter reads them all).
  // Arguments as DecoderSession::prefill; writes out.hidden (rows, n_text, D) and the other outputs when given.
  // Default: a fresh session's prefill, which equals the official pass for GIT; for T5 the rows from the EOS on
  // differ (officially they attend uniformly), so a backend that runs T5 overrides this.
  virtual void forward(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text,
                       int n_text, const float* image_hw, const DecoderOutputs& out) const {
    DecoderLimits limits;
    limits.max_rows = rows;
    limits.max_context = n_context > 0 ? n_context : 1;
    limits.max_text = n_text;
    new_session(limits)->prefill(visual, rows, context, n_context, text, n_text, image_hw, out);
  }
};

class MaskDecoderBackend {
 public:
  virtual ~MaskDecoderBackend() = default;
  virtual void decode(const float* sam_features, int batch, const float* boxes, int prompts,
                      const float* visual_tokens, const float* text_hidden, int text_len, float* mask_logits,
                      float* iou) = 0;
};

class ProposalHeadBackend {
 public:
  virtual ~ProposalHeadBackend() = default;
  virtual void proposals(const float* features, int batch, float* heatmap, float* box_regs) = 0;
};

struct Backend {
  std::string name;   // "cpu" | "tensorrt"
  std::unique_ptr<ImageEncoderBackend> image_encoder;
  std::unique_ptr<PromptAdapterBackend> prompt_adapter;
  std::unique_ptr<TextDecoderBackend> text_decoder;
  std::unique_ptr<MaskDecoderBackend> mask_decoder;
  std::unique_ptr<ProposalHeadBackend> proposal_head;   // null when the model has none
};

// ---- choosing a backend (the one place) ------------------------------------------------------------------------
struct TensorRtProbe {
  bool available = false;
  std::string reason;   // why not (no CUDA device / driver, built without TensorRT, TensorRT library failed)
};

struct TensorRtOptions {
  int max_batch = 1;            // images per encode / mask call
  int max_prompts = 8;          // boxes per image
  DecoderLimits decoder;        // decoder profiles (max rows = beams)
  int optimization_level = 3;   // IBuilderConfig::setBuilderOptimizationLevel (0..5)
  size_t workspace_bytes = size_t(1) << 30;   // memory pool limit (kWORKSPACE)
  bool cuda_graphs = true;      // capture the decode step in a CUDA graph (falls back when capture fails)
  bool prefer_fp16 = true;      // build from onnx/<group>.fp16.onnx when present, else onnx/<group>.onnx
};

// Never throws and never crashes: no GPU, no driver (cudaGetDeviceCount errors, e.g. 35), or a build without
// TensorRT all give available = false with the reason.
TensorRtProbe probe_tensorrt() noexcept;

// Loads (building when missing or stale) the plans under model_dir/trt/<gpu>-<trt version>/ from the ONNX graphs
// in model_dir/onnx/ (pixelllm_ref.export_onnx). Throws BACKEND_UNAVAILABLE (no TensorRT/GPU), MODEL_NOT_FOUND
// (no ONNX to build from), ENGINE_MISMATCH (a plan that fails its manifest check and cannot be rebuilt).
std::unique_ptr<Backend> create_tensorrt_backend(const std::string& model_dir, const TensorRtOptions& options);

// "cpu" -> "cpu"; "tensorrt" -> "tensorrt" or BACKEND_UNAVAILABLE with the probe's reason; "auto" -> "tensorrt"
// when the probe succeeds and the model directory has ONNX graphs (model_has_onnx), else "cpu"; anything else
// -> BACKEND_UNAVAILABLE.
inline std::string choose_backend(const std::string& requested, const TensorRtProbe& probe, bool model_has_onnx) {
  if (requested == "cpu") return "cpu";
  if (requested == "tensorrt") {
    if (!probe.available) core::fail(core::ErrorCode::BackendUnavailable, "backend 'tensorrt': " + probe.reason);
    if (!model_has_onnx)
      core::fail(core::ErrorCode::BackendUnavailable,
                 "backend 'tensorrt': the model directory has no onnx/ graphs (python -m pixelllm_ref.export_onnx)");
    return "tensorrt";
  }
  if (requested == "auto") return probe.available && model_has_onnx ? "tensorrt" : "cpu";
  core::fail(core::ErrorCode::BackendUnavailable, "unknown backend '" + requested + "' (auto, cpu, tensorrt)");
}

#if !defined(PIXELLLM_HAVE_TENSORRT)
inline TensorRtProbe probe_tensorrt() noexcept { return {false, "this build has no TensorRT backend"}; }
inline std::unique_ptr<Backend> create_tensorrt_backend(const std::string&, const TensorRtOptions&) {
  core::fail(core::ErrorCode::BackendUnavailable, "backend 'tensorrt': this build has no TensorRT backend");
}
#endif

// ---- default greedy step (host argmax over the step's logits) ----------------------------------------------------
inline GreedyStep DecoderSession::step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) {
  const int n = rows(), vocab = vocab_size(), nc = corner_values();
  std::vector<float> logits(static_cast<size_t>(n) * vocab);
  GreedyStep out;
  out.tokens.resize(n);
  out.logprobs.resize(n);
  out.corners.resize(static_cast<size_t>(n) * nc);
  DecoderOutputs o;
  o.logits = logits.data();
  o.corners = out.corners.data();
  step(tokens, o);
  for (int r = 0; r < n; ++r) {
    float* row = logits.data() + static_cast<size_t>(r) * vocab;
    if (finished != nullptr && finished[r]) {
      out.tokens[r] = eos_id;
      out.logprobs[r] = 0.f;
      continue;
    }
    const int32_t prev = tokens[r];
    if (prev >= 0 && prev < vocab && row[prev] > -1e4f) row[prev] = -1e4f;
    int best = 0;
    for (int v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - row[best]));
    out.tokens[r] = best;
    out.logprobs[r] = static_cast<float>(-std::log(sum));
  }
  return out;
}

// ---- default greedy loop (one step_greedy / step per token on the calling thread) -------------------------------
inline void DecoderSession::run_greedy(int32_t* feed, int max_steps, int32_t eos_id, const GreedyNext& next,
                                       const std::atomic<bool>& cancel) {
  const int n = rows();
  for (int i = 0; i < max_steps; ++i) {
    if (i > 0 && cancel.load(std::memory_order_relaxed))
      core::fail(core::ErrorCode::Aborted, "generation cancelled");
    GreedyStep g;
    if (i + 1 < max_steps) {
      g = step_greedy(feed, nullptr, eos_id);
    } else {  // the last step: its corners only
      g.tokens.assign(n, eos_id);
      g.logprobs.assign(n, 0.f);
      g.corners.resize(static_cast<size_t>(n) * corner_values());
      DecoderOutputs o;
      o.corners = g.corners.data();
      step(feed, o);
    }
    if (!next(g, feed)) return;
  }
}

}  // namespace pixelllm::runtime
