#include "pipeline/tasks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "pipeline/decoding.h"
#include "pipeline/masks.h"

namespace pixelllm::pipeline {

using core::ErrorCode;

TaskModel TaskModel::from_config(const core::Json& config, runtime::Backend* backend) {
  core::JsonReader top(config, "config.json");
  TaskModel m;
  m.backend = backend;
  m.image_size = static_cast<int>(top.get_int("image_size", 16, 8192));
  m.vocab_size = static_cast<int>(top.get_int("vocab_size", 2, 1 << 24));
  m.max_caption_length = static_cast<int>(top.get_int("max_caption_length", 2, 4096));
  m.bos = static_cast<int32_t>(top.get_int("bos_token_id", 0, m.vocab_size - 1));
  m.eos = static_cast<int32_t>(top.get_int("eos_token_id", 0, m.vocab_size - 1));
  const std::string head = top.get_string("text_decoder");
  if (head == "git_decoder")
    m.hidden_size = static_cast<int>(top.object("git_decoder").get_int("hidden_size", 1, 1 << 16));
  else if (head == "t5")
    m.hidden_size = static_cast<int>(top.object("t5").get_int("d_model", 1, 1 << 16));
  else
    core::fail(ErrorCode::ConfigMismatch, "config.json: text_decoder '" + head + "' (git_decoder, t5)");
  m.num_points = static_cast<int>(top.object("point_head").get_int("num_points", 1, 64));
  const core::JsonReader fusion = top.object("feature_fusion");
  m.feature_grid = static_cast<int>(fusion.get_int("output_size", 1, 1024));
  m.feature_channels = static_cast<int>(fusion.get_int("out_channels", 1, 1 << 16));
  const core::JsonReader sam = top.object("sam_image_encoder");
  m.sam_grid = static_cast<int>(sam.get_int("image_size", 16, 8192) / sam.get_int("patch_size", 1, 1024));
  m.sam_channels = static_cast<int>(sam.get_int("output_channels", 1, 1 << 16));
  m.mask_size = 4 * m.sam_grid;
  m.context_length = static_cast<int>(top.get_int("max_context_length", 1, 4096, m.max_caption_length));
  const core::JsonReader pa = top.object("prompt_adapter");
  const std::string fuse = pa.get_string("prompt_fuse_fn", 16, "sparse");
  m.visual_tokens = fuse == "dense" ? m.feature_grid * m.feature_grid
                                    : static_cast<int>(pa.get_int("num_outputs", 1, 4096));
  m.visual_dim = pa.has("visual_projection_dim") ? static_cast<int>(pa.get_int("visual_projection_dim", 1, 1 << 16))
                                                 : static_cast<int>(pa.get_int("output_dim", 1, 1 << 16));
  return m;
}

void check_box(const Box& b, const ImageGeometry& g) {
  const bool finite = std::isfinite(b.x0) && std::isfinite(b.y0) && std::isfinite(b.x1) && std::isfinite(b.y1);
  PIXELLLM_CHECK(finite && b.x0 < b.x1 && b.y0 < b.y1 && b.x0 >= 0 && b.y0 >= 0 &&
                     b.x1 <= static_cast<float>(g.orig_w) && b.y1 <= static_cast<float>(g.orig_h),
                 InvalidBox,
                 "box must be finite with 0 <= x0 < x1 <= " + std::to_string(g.orig_w) + " and 0 <= y0 < y1 <= " +
                     std::to_string(g.orig_h));
}

std::vector<float> visual_tokens(const TaskModel& m, const ImageFeatures& f, const Box& mb, bool whole_image) {
  const size_t n = static_cast<size_t>(m.visual_tokens) * m.visual_dim;
  if (whole_image) {
    std::lock_guard<std::mutex> lock(f.mu);
    if (f.whole_image_tokens.size() == n) return f.whole_image_tokens;
  }
  std::vector<float> out(n);
  const float box[4] = {mb.x0, mb.y0, mb.x1, mb.y1};
  m.backend->prompt_adapter->visual_tokens(f.features.data(), 1, box, 1, out.data());
  if (whole_image) {
    std::lock_guard<std::mutex> lock(f.mu);
    f.whole_image_tokens = out;
  }
  return out;
}

namespace {

void check_cancel(const std::atomic<bool>& cancel) {
  PIXELLLM_CHECK(!cancel.load(std::memory_order_relaxed), Aborted, "cancelled");
}

Box whole_image_box(const ImageGeometry& g) {
  return {0.f, 0.f, static_cast<float>(g.valid_w), static_cast<float>(g.valid_h)};
}

TokenEvent to_orig(TokenEvent e, const ImageGeometry& g) {
  e.corners = g.to_orig(e.corners);
  e.x = g.to_orig_x(e.x);
  e.y = g.to_orig_y(e.y);
  return e;
}

// The official mask path for one prompt: text states of `tokens` (the cleaned, 0-padded row) by the full decoder
// pass, then the mask decoder with the box prompt (resized frame) and the post-processing to the original size.
// `session` (may be null): the decode that produced `tokens` on the same visual tokens and context; where the
// backend can continue it (DecoderSession::continue_text_states: GIT on the CPU), only the positions after the
// ones it fed are run instead of the whole pass.
MaskResult decode_mask(const TaskModel& m, const ImageFeatures& f, const Box& model_box,
                       const std::vector<float>& visual, const std::vector<int32_t>& context,
                       const std::vector<int32_t>& tokens, runtime::DecoderSession* session,
                       const std::atomic<bool>& cancel, TaskTrace* trace) {
  PIXELLLM_CHECK(m.backend->mask_decoder != nullptr, BackendUnavailable, "this model has no mask decoder");
  const ImageGeometry& g = f.geometry;
  const int L = static_cast<int>(tokens.size());
  std::vector<float> hidden(static_cast<size_t>(L) * m.hidden_size);
  // No context = one 0 token; a context is 0-padded to the official row length, as the official data pipeline
  // gives it (padding keys are masked everywhere except in T5's uniformly attending rows after the EOS).
  std::vector<int32_t> ctx = context.empty() ? std::vector<int32_t>{0} : context;
  if (!context.empty() && static_cast<int>(ctx.size()) < m.context_length) ctx.resize(m.context_length, 0);
  const float image_hw[2] = {static_cast<float>(g.valid_h), static_cast<float>(g.valid_w)};
  runtime::DecoderOutputs out;
  out.hidden = hidden.data();
  check_cancel(cancel);
  if (session == nullptr || !session->continue_text_states(tokens.data(), L, hidden.data()))
    m.backend->text_decoder->forward(visual.data(), 1, ctx.data(), static_cast<int>(ctx.size()), tokens.data(), L,
                                     image_hw, out);
  check_cancel(cancel);
  std::vector<float> logits(static_cast<size_t>(m.mask_size) * m.mask_size);
  float iou = 0.f;
  const float box[4] = {model_box.x0, model_box.y0, model_box.x1, model_box.y1};
  m.backend->mask_decoder->decode(f.sam.data(), 1, box, 1, visual.data(), hidden.data(), L, logits.data(), &iou);
  MaskGeometry mg;
  mg.valid_h = g.valid_h;
  mg.valid_w = g.valid_w;
  mg.padded_h = mg.padded_w = g.size;
  mg.orig_h = g.orig_h;
  mg.orig_w = g.orig_w;
  mg.resize = m.mask_resize;
  MaskResult r;
  r.width = g.orig_w;
  r.height = g.orig_h;
  r.mask = postprocess_mask(logits.data(), m.mask_size, m.mask_size, mg);
  r.iou = iou;
  r.box = g.to_orig(model_box);
  if (trace != nullptr) {
    trace->mask_tokens = tokens;
    trace->mask_logits = std::move(logits);
    trace->iou = iou;
    trace->model_box = model_box;
  }
  return r;
}

void check_ids(const std::vector<int32_t>& ids, int vocab, const char* what) {
  for (int32_t t : ids)
    PIXELLLM_CHECK(t >= 0 && t < vocab, InvalidText,
                   std::string(what) + ": token id " + std::to_string(t) + " outside the vocabulary");
}

}  // namespace

GenerateResult run_generate(const TaskModel& m, const ImageFeatures& f, const GenerateRequest& req,
                            const std::function<void(const TokenEvent&)>& on_token, const std::atomic<bool>& cancel,
                            TaskTrace* trace) {
  const ImageGeometry& g = f.geometry;
  const bool refer = req.task == GenerateRequest::Refer;
  PIXELLLM_CHECK(req.max_tokens >= 0, InvalidArgument, "max_tokens must be >= 0");
  PIXELLLM_CHECK(req.max_tokens <= m.max_caption_length, LimitExceeded,
                 "max_tokens " + std::to_string(req.max_tokens) + " is more than the model's max_caption_length " +
                     std::to_string(m.max_caption_length));
  PIXELLLM_CHECK(req.beams >= 1 && req.beams <= 16, InvalidArgument, "beams must be within 1..16");
  PIXELLLM_CHECK(static_cast<int>(req.context_tokens.size()) <= m.max_caption_length, LimitExceeded,
                 "the context has " + std::to_string(req.context_tokens.size()) + " tokens, the model takes at most " +
                     std::to_string(m.max_caption_length));
  check_ids(req.context_tokens, m.vocab_size, "context");
  if (req.with_mask)
    PIXELLLM_CHECK(m.backend->mask_decoder != nullptr, BackendUnavailable, "this model has no mask decoder");

  Box prompt = whole_image_box(g);
  bool whole = true;
  if (req.task == GenerateRequest::Describe) {
    PIXELLLM_CHECK(req.box.has_value(), InvalidBox, "describe needs a box");
    check_box(*req.box, g);
    prompt = g.to_model(*req.box);
    whole = false;
  } else {
    PIXELLLM_CHECK(!req.box.has_value(), InvalidArgument, "only describe takes a box");
  }
  if (refer) {
    PIXELLLM_CHECK(!req.text_tokens.empty(), InvalidText, "refer needs the expression's text tokens");
    PIXELLLM_CHECK(static_cast<int>(req.text_tokens.size()) <= m.max_caption_length, LimitExceeded,
                   "the expression has " + std::to_string(req.text_tokens.size()) +
                       " tokens with bos/eos, the model takes at most " + std::to_string(m.max_caption_length));
    PIXELLLM_CHECK(req.beams == 1, InvalidArgument, "refer teacher-forces the expression: beams must be 1");
  } else {
    PIXELLLM_CHECK(req.text_tokens.empty(), InvalidArgument, "only refer takes text tokens");
  }

  check_cancel(cancel);
  const std::vector<float> visual = visual_tokens(m, f, prompt, whole);

  DecodeInput in;
  in.visual = visual.data();
  in.n_visual = m.visual_tokens;
  in.visual_dim = m.visual_dim;
  if (!req.context_tokens.empty()) {
    in.context = req.context_tokens.data();
    in.n_context = static_cast<int>(req.context_tokens.size());
  }
  DecodeOptions o;
  // max_tokens words at most: the official buffer holds BOS + words + the never-written EOS slot.
  o.max_length = req.max_tokens == 0 ? m.max_caption_length : std::min(req.max_tokens + 2, m.max_caption_length);
  o.bos_id = m.bos;
  o.eos_id = m.eos;
  o.beams = req.beams;
  o.image_width = static_cast<float>(g.valid_w);
  o.image_height = static_cast<float>(g.valid_h);
  o.vocab_size = m.vocab_size;
  o.num_points = m.num_points;

  auto emit = [&](const TokenEvent& e) {
    if (on_token) on_token(to_orig(e, g));
  };
  const int text_len = refer ? static_cast<int>(req.text_tokens.size()) : 0;
  // With a mask, the session also holds the mask's text row (decode_mask continues it): its official length.
  const int mask_len = std::max<int>(refer ? m.max_caption_length : o.max_length, text_len);
  auto session =
      m.backend->text_decoder->new_session(decode_limits(in, o, req.with_mask ? mask_len : text_len));
  DecodeResult d = refer ? teacher_forced(*session, in, o, req.text_tokens, emit, cancel)
                         : generate(*session, in, o, emit, cancel);
  if (!req.with_mask) session.reset();

  GenerateResult r;
  r.tokens = d.tokens;
  r.events.reserve(d.events.size());
  for (const TokenEvent& e : d.events) r.events.push_back(to_orig(e, g));
  r.score = d.score;
  r.box = g.to_orig(d.box);
  if (req.with_mask) {
    // prepare_text_features: BOS..EOS, 0 after, over the official row length.
    const int L = std::max<int>(mask_len, static_cast<int>(d.sequence.size()));
    std::vector<int32_t> row(d.sequence);
    row.resize(L, 0);
    r.mask = decode_mask(m, f, d.box, visual, req.context_tokens, row, req.beams == 1 ? session.get() : nullptr,
                         cancel, trace);
  }
  return r;
}

MaskResult run_segment(const TaskModel& m, const ImageFeatures& f, const Box& box, const std::atomic<bool>& cancel,
                       TaskTrace* trace) {
  PIXELLLM_CHECK(m.backend->mask_decoder != nullptr, BackendUnavailable, "this model has no mask decoder");
  const ImageGeometry& g = f.geometry;
  check_box(box, g);
  const Box mb = g.to_model(box);
  check_cancel(cancel);
  const std::vector<float> visual = visual_tokens(m, f, mb, false);
  // The text states come from describing the box (greedy, official rules), as the official region path does.
  DecodeInput in;
  in.visual = visual.data();
  in.n_visual = m.visual_tokens;
  in.visual_dim = m.visual_dim;
  DecodeOptions o;
  o.max_length = m.max_caption_length;
  o.bos_id = m.bos;
  o.eos_id = m.eos;
  o.image_width = static_cast<float>(g.valid_w);
  o.image_height = static_cast<float>(g.valid_h);
  o.vocab_size = m.vocab_size;
  o.num_points = m.num_points;
  auto session = m.backend->text_decoder->new_session(decode_limits(in, o, o.max_length));  // + the mask's row
  DecodeResult d = greedy_decode(*session, in, o, nullptr, cancel);
  std::vector<int32_t> row(d.sequence);
  row.resize(std::max<size_t>(row.size(), static_cast<size_t>(o.max_length)), 0);
  return decode_mask(m, f, mb, visual, {}, row, session.get(), cancel, trace);
}

}  // namespace pixelllm::pipeline
