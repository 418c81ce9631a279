// The interface native/addon calls: one Pipeline per loaded model directory, tasks over cached image features.
//
// Nothing here knows about N-API. Every function may throw pixelllm::core::Error (native/core/error.h) with a
// stable code; anything else that escapes (std::bad_alloc, std::exception) is reported as OUT_OF_MEMORY / INTERNAL.
// Thread-safety: every member function may be called concurrently from several threads on one Pipeline
// (per-request state: KV cache, scratch buffers); ImageFeatures are immutable once returned.
//
// Coordinates: every Box / point is in pixels of the ORIGINAL (unpadded, unresized) image, x to the right, y down.
// Token sequences follow the official PixelLLM input pipeline (scenic projects/pixel_llm io/ops.py):
//   context tokens (Refer)   = tokenize("where is " + expression) + [eos]      (no bos; append_context_eos=True)
//   context tokens (others)  = tokenize(prompt) + [eos] when the caller gives a prompt (e.g. the official
//                              "a long image caption: " / "an object of " prompts), else empty
//   text tokens (Refer)      = [bos] + tokenize(expression) + [eos]            (teacher-forced, with_cap=False)
// The JS layer builds them with the model's tokenizer.json and the config's bos/eos ids.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pixelllm::pipeline {

struct LoadOptions {
  std::string backend = "auto";  // "auto" | "cpu" | "tensorrt"; unknown or unavailable -> BACKEND_UNAVAILABLE
  int threads = 0;               // 0 = hardware concurrency
  std::string decoder_weights = "fp32";    // CPU backend: "fp32" | "bf16" (text decoder weights; INVALID_ARGUMENT
                                           // otherwise); the TensorRT backend ignores it
  std::string encoder_precision = "fp32";  // CPU backend: "fp32" | "bf16" (image encoders compute in bfloat16;
                                           // BACKEND_UNAVAILABLE without AVX512-BF16); TensorRT ignores it
  std::string mask_resize = "sam";         // "sam" | "evaluator": how low-res mask logits become a mask at the
                                           // original size (pipeline/masks.h MaskResize); INVALID_ARGUMENT otherwise
};

// A non-owning view of the original image, RGB8, row-major, tightly packed (stride = width * 3).
// The memory stays valid (and unchanged) for the duration of Pipeline::encode only; the addon keeps the
// JS Buffer alive meanwhile (zero-copy handoff). The addon has validated: width, height >= 1 and
// rgb != nullptr; sizes above the model's limits are the pipeline's to reject (LIMIT_EXCEEDED).
struct Image {
  int width = 0;
  int height = 0;
  const uint8_t* rgb = nullptr;
};

// Opaque: encoder outputs (SAM + EVA02 fused features) and the geometry needed to map back to the original image.
struct ImageFeatures;

// Host memory `features` holds (its encoder outputs), for reporting to a garbage collector; the lazily computed
// whole-image visual tokens (T x Dv floats: ~100 KB at official sizes) are not counted.
size_t feature_bytes(const ImageFeatures& features);

struct Box {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// One generated token. `x, y` = the token's point (centre of `corners`), `corners` = the two predicted corners
// (point head, absolute pixels of the original image), `logprob` = log-probability of the chosen token.
struct TokenEvent {
  int index = 0;  // 0-based position in the generated sequence
  int32_t token = 0;
  float x = 0, y = 0;
  Box corners;
  float logprob = 0;
};

struct MaskResult {
  int width = 0, height = 0;       // == original image size
  std::vector<uint8_t> mask;       // width*height, row-major, 0 or 1
  float iou = 0;                   // the mask decoder's IoU prediction
  Box box;                         // the box prompt the mask was decoded from
};

struct GenerateRequest {
  enum Task { Caption, Refer, Describe };
  Task task = Caption;
  std::optional<Box> box;                // Describe: the user's box (required); Caption/Refer: none (whole image)
  std::vector<int32_t> context_tokens;   // the prefix the decoder conditions on (see the header comment)
  std::vector<int32_t> text_tokens;      // Refer: see the header comment; otherwise empty
  int max_tokens = 0;                    // 0 = config max_caption_length; > that -> LIMIT_EXCEEDED
  int beams = 1;                         // 1 = greedy (official rules); > 1 = beam search
  bool with_mask = false;                // Refer: also decode the SAM mask from the referring box + text states
};

struct GenerateResult {
  std::vector<int32_t> tokens;           // generated tokens (Refer: the teacher-forced expression), without bos
  std::vector<TokenEvent> events;        // one per token, the same events on_token received
  float score = 0;                       // official score: mean log-prob (see auto_regressive_decode.py)
  std::optional<Box> box;                // Refer (and Describe/Caption when the model predicts one): the box
  std::optional<MaskResult> mask;        // Refer with with_mask
};

struct DenseOptions {
  int max_boxes = 0;               // 0 = config default
  float score_threshold = -1;      // < 0 = config default
  float nms_iou = -1;              // < 0 = config default
  int max_tokens = 0;              // per caption; 0 = config default
  std::vector<int32_t> context_tokens;  // the caption prefix of every box (the official region prompt
                                        // "an object of " + eos); empty = none
};

// Items come sorted by sqrt(max(score, 0) * exp(caption_score)), best first (pipeline/dense.h).
struct DenseItem {
  Box box;
  float score = 0;                 // proposal score (sigmoid of the heatmap)
  std::vector<int32_t> tokens;     // caption tokens (without bos/eos)
  float caption_score = 0;         // the caption's official score: mean log-prob (greedy)
};

struct ModelInfo {
  std::string dir;
  std::string text_decoder;        // "git_decoder" | "t5"
  int image_size = 0;
  int vocab_size = 0;
  int32_t bos_token_id = 0, eos_token_id = 0, pad_token_id = 0;
  int max_caption_length = 0;
  bool has_proposal_head = false;  // dense captioning available
  bool has_mask_decoder = false;   // segment / refer with mask available
  std::string backend;             // the backend actually chosen: "cpu" | "tensorrt"
  int threads = 0;                 // worker threads actually used
  std::string decoder_weights;     // "fp32" | "bf16" on the CPU backend, "" on TensorRT
  std::string encoder_precision;   // likewise
  std::string mask_resize;         // "sam" | "evaluator" (LoadOptions)
};

class Pipeline {
 public:
  virtual ~Pipeline() = default;

  // Reads dir/config.json, dir/model.safetensors (and engines for the tensorrt backend); validates everything.
  // Throws MODEL_NOT_FOUND, MODEL_FORMAT, CONFIG_MISMATCH, BACKEND_UNAVAILABLE, ENGINE_MISMATCH, OUT_OF_MEMORY.
  static std::shared_ptr<Pipeline> load(const std::string& dir, const LoadOptions& options);

  // Preprocess (resize longer side, pad, normalise) + both image encoders + fusion. Throws INVALID_IMAGE,
  // LIMIT_EXCEEDED.
  virtual std::shared_ptr<const ImageFeatures> encode(const Image& image) = 0;

  // Caption / Refer / Describe. `on_token` is called once per token, in order, before generate returns, while the
  // calling thread waits: from the calling thread or from another request's thread (the CPU backend's step
  // batcher advances every concurrent greedy decode from the thread that leads the batch), never two at once for
  // one request. `cancel` is polled at least once per decode step: when set, throws ABORTED.
  // Throws INVALID_BOX, INVALID_TEXT (bad token ids / lengths), LIMIT_EXCEEDED, ABORTED.
  virtual GenerateResult generate(const ImageFeatures& features, const GenerateRequest& request,
                                  const std::function<void(const TokenEvent&)>& on_token,
                                  const std::atomic<bool>& cancel) = 0;

  // SAM mask for a box prompt (the pipeline supplies the text states it needs, e.g. by describing the box).
  virtual MaskResult segment(const ImageFeatures& features, const Box& box, const std::atomic<bool>& cancel) = 0;

  // Dense captioning: proposals -> NMS -> a caption per box. Throws BACKEND_UNAVAILABLE when the model has no
  // proposal head.
  virtual std::vector<DenseItem> dense(const ImageFeatures& features, const DenseOptions& options,
                                       const std::atomic<bool>& cancel) = 0;

  virtual const ModelInfo& info() const = 0;
};

}  // namespace pixelllm::pipeline
