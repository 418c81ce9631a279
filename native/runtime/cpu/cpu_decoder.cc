#include "runtime/cpu/cpu_decoder.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"

namespace pixelllm::runtime::cpu {

namespace {

// "No context" is one 0 token (backend.h); the model takes null for it.
const int32_t* model_context(const int32_t* context, int& n_context) {
  if (context == nullptr || n_context <= 0 || (n_context == 1 && context[0] == 0)) {
    n_context = 0;
    return nullptr;
  }
  return context;
}

void check_image_hw(const float* image_hw) {
  PIXELLLM_CHECK(image_hw != nullptr && std::isfinite(image_hw[0]) && std::isfinite(image_hw[1]) &&
                     image_hw[0] > 0 && image_hw[1] > 0,
                 InvalidArgument, "decoder: image_hw must hold a positive (h, w)");
}

}  // namespace

CpuDecoderSession::CpuDecoderSession(const model::TextDecoder& d, const model::PointHead& ph, int n_visual,
                                     std::mutex& compute, std::shared_ptr<StepBatcher> batcher,
                                     const DecoderLimits& lim)
    : d_(d), ph_(ph), n_visual_(n_visual), compute_(compute), batcher_(std::move(batcher)), lim_(lim) {
  PIXELLLM_CHECK(lim.max_rows >= 1 && lim.max_rows <= 64 && lim.max_context >= 0 && lim.max_text >= 1,
                 LimitExceeded, "decoder session: limits out of range (rows 1..64, text >= 1)");
  model::TextDecoderLimits ml;
  ml.max_visual = n_visual;
  ml.max_context = lim.max_context;
  ml.max_text = lim.max_text;
  ml.max_sequences = lim.max_rows;
  state_ = d.new_state(ml);
  const size_t rows = lim_.max_rows;
  logits_.resize(rows * d_.vocab_size());
  logp_.resize(d_.vocab_size());
  hidden_.resize(rows * d_.hidden_size());
  corners_.resize(rows * ph_.num_points() * 2);
  scratch_.resize(ph_.scratch_floats(lim_.max_rows));
  fed_.reserve(lim_.max_text);
  history_.resize(static_cast<size_t>(lim_.max_text) * d_.hidden_size());
}

void CpuDecoderSession::record(int32_t token, const float* hidden) {
  const size_t D = static_cast<size_t>(d_.hidden_size());
  if (!history_valid_ || fed_.size() >= static_cast<size_t>(lim_.max_text)) {
    history_valid_ = false;
    return;
  }
  std::copy(hidden, hidden + D, history_.begin() + fed_.size() * D);
  fed_.push_back(token);
}

bool CpuDecoderSession::continue_text_states(const int32_t* text, int n_text, float* hidden) {
  if (!d_.forward_continues_steps() || !history_valid_ || rows_ != 1 || text == nullptr || hidden == nullptr)
    return false;
  const int fed = static_cast<int>(fed_.size()), V = d_.vocab_size(), D = d_.hidden_size();
  if (n_text < fed || n_text - fed > lim_.max_text - state_->position() || state_->position() != fed) return false;
  for (int i = 0; i < fed; ++i)
    if (text[i] != fed_[i]) return false;
  for (int i = fed; i < n_text; ++i)
    if (text[i] < 0 || text[i] >= V) return false;  // forward() reports it
  std::copy(history_.begin(), history_.begin() + static_cast<size_t>(fed) * D, hidden);
  if (n_text > fed) {
    std::lock_guard<std::mutex> lock(compute_);
    d_.step_block(*state_, text + fed, n_text - fed, nullptr, hidden + static_cast<size_t>(fed) * D);
  }
  history_valid_ = false;  // the rest was not recorded
  return true;
}

CpuDecoderSession::~CpuDecoderSession() {
  if (batcher_ && state_) batcher_->forget(state_.get());
}

void CpuDecoderSession::prefill(const float* visual, int rows, const int32_t* context, int n_context,
                                const int32_t* text, int n_text, const float* image_hw, const DecoderOutputs& out) {
  PIXELLLM_CHECK(visual != nullptr && text != nullptr, InvalidArgument, "decoder prefill: null input");
  PIXELLLM_CHECK(rows >= 1 && rows <= lim_.max_rows, LimitExceeded,
                 "decoder prefill: " + std::to_string(rows) + " rows, the session allows " +
                     std::to_string(lim_.max_rows));
  PIXELLLM_CHECK(n_text >= 1 && n_text <= lim_.max_text, LimitExceeded,
                 "decoder prefill: " + std::to_string(n_text) + " text tokens, the session allows " +
                     std::to_string(lim_.max_text));
  check_image_hw(image_hw);
  image_h_ = image_hw[0];
  image_w_ = image_hw[1];
  const int32_t* ctx = model_context(context, n_context);
  rows_ = 0;
  fed_.clear();
  history_valid_ = true;
  {
    struct Prefilling {  // steps of other sessions wait for this prefix (step_batcher.h: prefills go first)
      explicit Prefilling(StepBatcher& b) : b(b) { b.begin_prefill(); }
      ~Prefilling() { b.end_prefill(); }
      StepBatcher& b;
    } prefilling(*batcher_);
    std::lock_guard<std::mutex> lock(compute_);
    d_.prefill(*state_, visual, n_visual_, ctx, n_context, rows);
    if (n_text > 1) {
      // Teacher forcing (refer's expression): every text position in one pass (TextDecoder::step_block), with the
      // point head over all of them; one token (BOS) steps through the batcher like any step.
      const int V = d_.vocab_size(), D = d_.hidden_size();
      const size_t n = static_cast<size_t>(rows) * n_text;
      for (size_t i = 0; i < n; ++i)
        PIXELLLM_CHECK(text[i] >= 0 && text[i] < V, InvalidText,
                       "decoder prefill: token " + std::to_string(text[i]) + " outside the vocabulary [0, " +
                           std::to_string(V) + ")");
      std::vector<float> own_hidden(out.hidden == nullptr ? n * D : 0);
      float* hidden = out.hidden != nullptr ? out.hidden : own_hidden.data();
      d_.step_block(*state_, text, n_text, out.logits, hidden);
      for (int p = 0; p < n_text; ++p) record(text[p], hidden + static_cast<size_t>(p) * D);
      if (out.corners != nullptr || out.point_logits != nullptr) {
        std::vector<float> scratch(ph_.scratch_floats(static_cast<int>(n)));
        ph_.predict(hidden, static_cast<int>(n), image_w_, image_h_, out.corners, out.point_logits, scratch.data());
      }
    }
  }
  rows_ = rows;
  if (n_text == 1) run_step(text, out);
}

void CpuDecoderSession::step(const int32_t* tokens, const DecoderOutputs& out) { run_step(tokens, out); }

void CpuDecoderSession::reorder(const int32_t* parents) {
  PIXELLLM_CHECK(rows_ > 0, InvalidArgument, "decoder reorder before prefill");
  std::vector<int> p(parents, parents + rows_);
  std::lock_guard<std::mutex> lock(compute_);
  d_.reorder(*state_, p.data());
  history_valid_ = false;
}

GreedyStep CpuDecoderSession::step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) {
  const int V = d_.vocab_size(), nc = corner_values();
  GreedyStep g;
  g.tokens.resize(rows_);
  g.logprobs.resize(rows_);
  g.corners.resize(static_cast<size_t>(rows_) * nc);
  DecoderOutputs o;
  o.logits = logits_.data();
  o.corners = g.corners.data();
  run_step(tokens, o);
  for (int r = 0; r < rows_; ++r) {
    if (finished != nullptr && finished[r]) {
      g.tokens[r] = eos_id;
      g.logprobs[r] = 0.f;
      continue;
    }
    const GreedyPick p = pick_greedy(logits_.data() + static_cast<size_t>(r) * V, V, tokens[r], logp_.data());
    g.tokens[r] = p.token;
    g.logprobs[r] = p.logprob;
  }
  return g;
}

void CpuDecoderSession::run_greedy(int32_t* feed, int max_steps, int32_t eos_id, const GreedyNext& next,
                                   const std::atomic<bool>& cancel) {
  PIXELLLM_CHECK(feed != nullptr && static_cast<bool>(next), InvalidArgument, "run_greedy: null feed or callback");
  if (max_steps <= 0) return;
  check_step(feed);
  GreedyStep g;
  g.tokens.resize(rows_);
  g.logprobs.resize(rows_);
  g.corners.resize(static_cast<size_t>(rows_) * corner_values());
  StepBatcher::Job job;
  job.state = state_.get();
  job.logits = logits_.data();
  job.hidden = hidden_.data();
  job.corners = g.corners.data();
  job.point_scratch = scratch_.data();
  job.image_w = image_w_;
  job.image_h = image_h_;
  StepBatcher::Greedy loop;
  loop.feed = feed;
  loop.max_steps = max_steps;
  loop.max_text = lim_.max_text;
  loop.eos_id = eos_id;
  // Each step's row-0 hidden state is in hidden_ when the callback runs (the batch wrote it), its token in feed.
  const GreedyNext recording = [&](const GreedyStep& step, int32_t* f) {
    record(f[0], hidden_.data());
    return next(step, f);
  };
  loop.next = &recording;
  loop.cancel = &cancel;
  loop.step = &g;
  loop.logp = logp_.data();
  batcher_->run_greedy(job, loop);
}

void CpuDecoderSession::check_step(const int32_t* tokens) const {
  const int V = d_.vocab_size();
  PIXELLLM_CHECK(rows_ > 0, InvalidArgument, "decoder step before prefill");
  PIXELLLM_CHECK(tokens != nullptr, InvalidArgument, "decoder step: null tokens");
  PIXELLLM_CHECK(state_->position() < lim_.max_text, LimitExceeded,
                 "decoder step: text position " + std::to_string(state_->position()) + " beyond the session's " +
                     std::to_string(lim_.max_text) + " text positions");
  for (int r = 0; r < rows_; ++r)
    PIXELLLM_CHECK(tokens[r] >= 0 && tokens[r] < V, InvalidText,
                   "decoder step: token " + std::to_string(tokens[r]) + " outside the vocabulary [0, " +
                       std::to_string(V) + ")");
}

void CpuDecoderSession::run_step(const int32_t* tokens, const DecoderOutputs& out) {
  check_step(tokens);
  StepBatcher::Job job;
  job.state = state_.get();
  job.tokens = tokens;
  job.logits = out.logits;
  job.hidden = out.hidden != nullptr ? out.hidden : hidden_.data();
  if (out.corners != nullptr || out.point_logits != nullptr) {
    job.corners = out.corners != nullptr ? out.corners : corners_.data();  // the head writes corners regardless
    job.point_logits = out.point_logits;
  }
  job.point_scratch = scratch_.data();
  job.image_w = image_w_;
  job.image_h = image_h_;
  batcher_->run(job);
  record(tokens[0], job.hidden);
}

CpuTextDecoder::CpuTextDecoder(const model::TextDecoder& decoder, const model::PointHead& points, int n_visual,
                               std::mutex& compute)
    : decoder_(decoder),
      points_(points),
      n_visual_(n_visual),
      compute_(compute),
      batcher_(std::make_shared<StepBatcher>(decoder, points, compute)) {
  PIXELLLM_CHECK(points.input_dim() == decoder.hidden_size(), ConfigMismatch,
                 "point_head input_dim " + std::to_string(points.input_dim()) + " != text decoder hidden size " +
                     std::to_string(decoder.hidden_size()));
  PIXELLLM_CHECK(n_visual >= 1, ConfigMismatch, "text decoder: no visual tokens per prompt");
}

std::unique_ptr<DecoderSession> CpuTextDecoder::new_session(const DecoderLimits& limits) const {
  return std::make_unique<CpuDecoderSession>(decoder_, points_, n_visual_, compute_, batcher_, limits);
}

void CpuTextDecoder::forward(const float* visual, int rows, const int32_t* context, int n_context,
                             const int32_t* text, int n_text, const float* image_hw,
                             const DecoderOutputs& out) const {
  PIXELLLM_CHECK(visual != nullptr && text != nullptr && rows >= 1 && n_text >= 1, InvalidArgument,
                 "decoder forward: empty input");
  const int V = decoder_.vocab_size(), D = decoder_.hidden_size();
  const int nc = points_.num_points() * 2, npl = points_.num_points() * points_.logits_per_point();
  const size_t per_visual = static_cast<size_t>(n_visual_) * decoder_.visual_dim();
  std::vector<float> hidden(static_cast<size_t>(n_text) * D);
  for (int r = 0; r < rows; ++r) {
    check_image_hw(image_hw + 2 * r);
    int nc_r = n_context;
    const int32_t* ctx = model_context(context == nullptr ? nullptr : context + static_cast<size_t>(r) * n_context,
                                       nc_r);
    float* h = out.hidden != nullptr ? out.hidden + static_cast<size_t>(r) * n_text * D : hidden.data();
    std::lock_guard<std::mutex> lock(compute_);
    decoder_.forward(visual + per_visual * r, n_visual_, ctx, nc_r, text + static_cast<size_t>(r) * n_text, n_text,
                     out.logits == nullptr ? nullptr : out.logits + static_cast<size_t>(r) * n_text * V, h);
    if (out.corners != nullptr || out.point_logits != nullptr) {
      std::vector<float> corners(static_cast<size_t>(n_text) * nc);
      points_.predict(h, n_text, image_hw[2 * r + 1], image_hw[2 * r],
                      out.corners == nullptr ? corners.data() : out.corners + static_cast<size_t>(r) * n_text * nc,
                      out.point_logits == nullptr ? nullptr
                                                  : out.point_logits + static_cast<size_t>(r) * n_text * npl);
    }
  }
}

}  // namespace pixelllm::runtime::cpu
