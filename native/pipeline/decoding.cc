#include "pipeline/decoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"
#include "cpu/softmax.h"

namespace pixelllm::pipeline {

using core::ErrorCode;

namespace {

constexpr float kRepeatLogit = -10000.f;  // official greedy: scatter_min of the previous token
constexpr float kBeamNegInf = -1.0e7f;    // official beam search NEG_INF

void check_cancel(const std::atomic<bool>& cancel) {
  PIXELLLM_CHECK(!cancel.load(std::memory_order_relaxed), Aborted, "generation cancelled");
}

void log_softmax(const float* x, int n, float* out) { cpu::log_softmax(x, n, out); }

// Box from the corners of one position: official points_to_boxes (min / max over the points).
Box box_of(const float* c, int num_points) {
  Box b{c[0], c[1], c[0], c[1]};
  for (int p = 1; p < num_points; ++p) {
    b.x0 = std::min(b.x0, c[2 * p]);
    b.y0 = std::min(b.y0, c[2 * p + 1]);
    b.x1 = std::max(b.x1, c[2 * p]);
    b.y1 = std::max(b.y1, c[2 * p + 1]);
  }
  return b;
}

TokenEvent make_event(int index, int32_t token, float logprob, const float* c, int num_points) {
  TokenEvent e;
  e.index = index;
  e.token = token;
  e.logprob = logprob;
  e.corners = num_points >= 2 ? Box{c[0], c[1], c[2], c[3]} : Box{c[0], c[1], c[0], c[1]};
  e.x = 0.5f * (e.corners.x0 + e.corners.x1);
  e.y = 0.5f * (e.corners.y0 + e.corners.y1);
  return e;
}

// Scratch for one request, allocated once before the loop.
struct Work {
  Work(const model::TextDecoder& d, const model::PointHead& ph, int rows)
      : logits(static_cast<size_t>(rows) * d.vocab_size()),
        logp(d.vocab_size()),
        hidden(static_cast<size_t>(rows) * d.hidden_size()),
        corners(static_cast<size_t>(rows) * ph.num_points() * 2),
        point_scratch(ph.scratch_floats(rows)) {}
  std::vector<float> logits, logp, hidden, corners, point_scratch;
};

void validate(const model::TextDecoder& decoder, const model::PointHead& points, const DecodeInput& in,
              const DecodeOptions& o) {
  PIXELLLM_CHECK(o.max_length >= 2, InvalidArgument,
                 "decode: max_length " + std::to_string(o.max_length) + " must be >= 2 (BOS + the EOS slot)");
  PIXELLLM_CHECK(o.max_length - 1 <= decoder.max_text_positions(), LimitExceeded,
                 "decode: max_length " + std::to_string(o.max_length) + " exceeds the decoder's " +
                     std::to_string(decoder.max_text_positions()) + " text positions + 1");
  PIXELLLM_CHECK(o.beams >= 1 && o.beams <= 16, LimitExceeded,
                 "decode: beams " + std::to_string(o.beams) + " outside 1..16");
  PIXELLLM_CHECK(o.per_node_beams >= 1 && o.per_node_beams * o.beams <= 64, LimitExceeded,
                 "decode: per_node_beams * beams must be within 1..64");
  const int v = decoder.vocab_size();
  PIXELLLM_CHECK(o.bos_id >= 0 && o.bos_id < v && o.eos_id >= 0 && o.eos_id < v, InvalidArgument,
                 "decode: bos/eos ids outside the vocabulary");
  PIXELLLM_CHECK(o.beams * o.per_node_beams <= v, InvalidArgument, "decode: more beam candidates than vocabulary");
  PIXELLLM_CHECK(std::isfinite(o.image_width) && std::isfinite(o.image_height) && o.image_width > 0 &&
                     o.image_height > 0,
                 InvalidArgument, "decode: image size must be positive");
  PIXELLLM_CHECK(in.visual != nullptr && in.n_visual >= 1, InvalidArgument, "decode: no visual tokens");
  PIXELLLM_CHECK(points.input_dim() == decoder.hidden_size(), ConfigMismatch,
                 "decode: point head input " + std::to_string(points.input_dim()) + " != decoder hidden size " +
                     std::to_string(decoder.hidden_size()));
}

void finish(DecodeResult& r, const model::PointHead& points, int hidden_size) {
  const int np = points.num_points();
  r.positions = static_cast<int>(r.sequence.size()) - 1;
  r.hidden.resize(static_cast<size_t>(r.positions) * hidden_size);
  r.corners.resize(static_cast<size_t>(r.positions) * np * 2);
  r.box = box_of(r.corners.data() + static_cast<size_t>(r.positions - 1) * np * 2, np);
}

}  // namespace

model::TextDecoderLimits decode_limits(const DecodeInput& input, const DecodeOptions& options, int max_text_tokens) {
  model::TextDecoderLimits lim;
  lim.max_visual = input.n_visual;
  lim.max_context = input.context ? input.n_context : 0;
  lim.max_text = std::max(options.max_length - 1, max_text_tokens);
  lim.max_sequences = std::max(options.beams, 1);
  return lim;
}

DecodeResult generate(const model::TextDecoder& decoder, model::TextDecoderState& state,
                      const model::PointHead& points, const DecodeInput& input, const DecodeOptions& options,
                      const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  return options.beams == 1 ? greedy_decode(decoder, state, points, input, options, on_token, cancel)
                            : beam_search(decoder, state, points, input, options, on_token, cancel);
}

// ---- greedy -----------------------------------------------------------------------------------------------------

DecodeResult greedy_decode(const model::TextDecoder& decoder, model::TextDecoderState& state,
                           const model::PointHead& points, const DecodeInput& in, const DecodeOptions& o,
                           const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  validate(decoder, points, in, o);
  PIXELLLM_CHECK(o.beams == 1, InvalidArgument, "greedy_decode: beams must be 1");
  const int V = decoder.vocab_size(), D = decoder.hidden_size(), np = points.num_points();
  Work w(decoder, points, 1);
  DecodeResult r;
  r.sequence.reserve(o.max_length);
  r.hidden.reserve(static_cast<size_t>(o.max_length) * D);
  r.corners.reserve(static_cast<size_t>(o.max_length) * np * 2);
  auto feed = [&](int32_t token, bool want_logits) {
    check_cancel(cancel);
    decoder.step(state, &token, want_logits ? w.logits.data() : nullptr, w.hidden.data());
    points.predict(w.hidden.data(), 1, o.image_width, o.image_height, w.corners.data(), nullptr,
                   w.point_scratch.data());
    r.hidden.insert(r.hidden.end(), w.hidden.begin(), w.hidden.begin() + D);
    r.corners.insert(r.corners.end(), w.corners.begin(), w.corners.begin() + np * 2);
  };

  check_cancel(cancel);
  decoder.prefill(state, in.visual, in.n_visual, in.context, in.n_context, 1);
  r.sequence.push_back(o.bos_id);
  feed(o.bos_id, o.max_length > 2);
  float total = 0.f;
  int32_t last = o.bos_id;
  bool ended = false;
  for (int cur = 1; cur < o.max_length - 1; ++cur) {
    float* lg = w.logits.data();
    lg[last] = std::min(lg[last], kRepeatLogit);
    log_softmax(lg, V, w.logp.data());
    const int32_t tok = static_cast<int32_t>(std::max_element(w.logp.begin(), w.logp.end()) - w.logp.begin());
    const float lp = w.logp[tok];
    total += lp;
    r.sequence.push_back(tok);
    if (tok == o.eos_id) {
      ended = true;
      break;
    }
    r.tokens.push_back(tok);
    feed(tok, cur + 1 < o.max_length - 1);  // no logits needed after the last writable slot
    TokenEvent e = make_event(static_cast<int>(r.tokens.size()) - 1, tok, lp,
                              r.corners.data() + r.corners.size() - np * 2, np);
    r.events.push_back(e);
    if (on_token) on_token(e);
    last = tok;
  }
  if (!ended) r.sequence.push_back(o.eos_id);  // the never-written last slot
  r.score = total / static_cast<float>(std::max<size_t>(r.tokens.size(), 1));
  finish(r, points, D);
  return r;
}

// ---- teacher forcing --------------------------------------------------------------------------------------------

DecodeResult teacher_forced(const model::TextDecoder& decoder, model::TextDecoderState& state,
                            const model::PointHead& points, const DecodeInput& in, const DecodeOptions& o,
                            const std::vector<int32_t>& text, const TokenCallback& on_token,
                            const std::atomic<bool>& cancel) {
  validate(decoder, points, in, o);
  const int V = decoder.vocab_size(), D = decoder.hidden_size(), np = points.num_points();
  PIXELLLM_CHECK(text.size() >= 2 && text[0] == o.bos_id, InvalidText,
                 "teacher_forced: text must start with BOS (" + std::to_string(o.bos_id) + ") and hold an EOS");
  size_t k = 1;
  while (k < text.size() && text[k] != o.eos_id) ++k;
  PIXELLLM_CHECK(k < text.size(), InvalidText,
                 "teacher_forced: text has no EOS (" + std::to_string(o.eos_id) + ")");
  for (size_t i = k + 1; i < text.size(); ++i)
    PIXELLLM_CHECK(text[i] == 0, InvalidText, "teacher_forced: only 0 padding may follow the EOS");
  PIXELLLM_CHECK(static_cast<int>(k) <= decoder.max_text_positions(), LimitExceeded,
                 "teacher_forced: text longer than the decoder's positions");
  Work w(decoder, points, 1);
  DecodeResult r;
  r.sequence.assign(text.begin(), text.begin() + static_cast<long>(k) + 1);
  r.hidden.reserve(k * D);
  r.corners.reserve(k * np * 2);
  check_cancel(cancel);
  decoder.prefill(state, in.visual, in.n_visual, in.context, in.n_context, 1);
  float total = 0.f;
  for (size_t p = 0; p < k; ++p) {
    check_cancel(cancel);
    const int32_t tok = text[p];
    if (p > 0) {  // log-prob of the token fed now under the previous position's logits
      log_softmax(w.logits.data(), V, w.logp.data());
      total += w.logp[tok];
    }
    decoder.step(state, &tok, w.logits.data(), w.hidden.data());
    points.predict(w.hidden.data(), 1, o.image_width, o.image_height, w.corners.data(), nullptr,
                   w.point_scratch.data());
    r.hidden.insert(r.hidden.end(), w.hidden.begin(), w.hidden.begin() + D);
    r.corners.insert(r.corners.end(), w.corners.begin(), w.corners.begin() + np * 2);
    if (p > 0) {
      r.tokens.push_back(tok);
      TokenEvent e = make_event(static_cast<int>(p) - 1, tok, w.logp[tok], w.corners.data(), np);
      r.events.push_back(e);
      if (on_token) on_token(e);
    }
  }
  log_softmax(w.logits.data(), V, w.logp.data());
  total += w.logp[o.eos_id];
  r.score = total / static_cast<float>(k);
  finish(r, points, D);
  return r;
}

// ---- beam search ------------------------------------------------------------------------------------------------

namespace {

struct Beam {
  std::vector<int32_t> seq;  // official buffer, max_length ids
  std::vector<float> hidden, corners;  // outputs of the positions fed so far (fed = number of positions)
  std::vector<float> logprob;          // log-prob of the token written at each position
  int fed = 0;
  float score = 0;  // live: log-prob sum; finished: length-normalised score
  bool finished = false;
};

// lax.top_k: indices of the k largest values in decreasing order, ties -> lower index first (a total order, so
// partial_sort gives exactly the prefix of a stable sort).
void top_k(const std::vector<float>& x, int k, std::vector<int>& idx) {
  idx.resize(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  idx.resize(k);
}

float brevity_penalty(float alpha, int length) {
  return std::pow(static_cast<float>((5.0 + length) / 6.0), alpha);
}

void copy_outputs(Beam& dst, const Beam& src, int D, int np2) {
  dst.fed = src.fed;
  std::copy(src.hidden.begin(), src.hidden.begin() + static_cast<long>(src.fed) * D, dst.hidden.begin());
  std::copy(src.corners.begin(), src.corners.begin() + static_cast<long>(src.fed) * np2, dst.corners.begin());
}

}  // namespace

DecodeResult beam_search(const model::TextDecoder& decoder, model::TextDecoderState& state,
                         const model::PointHead& points, const DecodeInput& in, const DecodeOptions& o,
                         const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  validate(decoder, points, in, o);
  const int K = o.beams, C = o.per_node_beams * o.beams, L = o.max_length;
  const int V = decoder.vocab_size(), D = decoder.hidden_size(), np = points.num_points(), np2 = np * 2;
  Work w(decoder, points, K);

  auto fresh = [&]() {
    Beam b;
    b.seq.assign(L, o.eos_id);
    b.seq[0] = o.bos_id;
    b.hidden.assign(static_cast<size_t>(L) * D, 0.f);
    b.corners.assign(static_cast<size_t>(L) * np2, 0.f);
    b.logprob.assign(L, 0.f);
    return b;
  };
  std::vector<Beam> live(K, fresh()), fin(K, fresh()), live_next(K, fresh()), fin_next(K, fresh());
  std::vector<Beam> cand(C, fresh());
  for (int i = 0; i < K; ++i) {
    live[i].score = i == 0 ? 0.f : kBeamNegInf;
    std::fill(fin[i].seq.begin(), fin[i].seq.end(), 0);  // official finished_seqs0 = zeros
    fin[i].score = kBeamNegInf;
  }
  std::vector<float> cand_lp(static_cast<size_t>(K) * V), logsm(static_cast<size_t>(K) * V), sel(C), pool;
  std::vector<int> idx, idx2, parents(K);
  std::vector<int32_t> feed(K);
  std::vector<float> topk_lp(C);
  std::vector<int> topk_beam(C);
  std::vector<uint8_t> newly(C);
  pool.reserve(K + C);

  auto step_live = [&](int pos) {  // feed live[i].seq[pos]; record outputs at `pos`
    check_cancel(cancel);
    for (int i = 0; i < K; ++i) feed[i] = live[i].seq[pos];
    decoder.step(state, feed.data(), w.logits.data(), w.hidden.data());
    points.predict(w.hidden.data(), K, o.image_width, o.image_height, w.corners.data(), nullptr,
                   w.point_scratch.data());
    for (int i = 0; i < K; ++i) {
      std::memcpy(live[i].hidden.data() + static_cast<size_t>(pos) * D, w.hidden.data() + static_cast<size_t>(i) * D,
                  sizeof(float) * D);
      std::memcpy(live[i].corners.data() + static_cast<size_t>(pos) * np2,
                  w.corners.data() + static_cast<size_t>(i) * np2, sizeof(float) * np2);
      live[i].fed = pos + 1;
    }
  };

  check_cancel(cancel);
  decoder.prefill(state, in.visual, in.n_visual, in.context, in.n_context, K);
  const float min_bp = brevity_penalty(o.alpha, L);
  int cur = 1;
  while (cur < L - 1) {
    // official termination: no live beam can beat the worst finished one
    float worst = fin[0].score;
    for (int i = 1; i < K; ++i) worst = std::min(worst, fin[i].score);
    const float best_live = live[K - 1].score / min_bp;
    bool terminated = true;
    for (int i = 0; i < K; ++i) terminated = terminated && ((fin[i].finished ? worst : kBeamNegInf) > best_live);
    if (terminated) break;

    step_live(cur - 1);
    for (int i = 0; i < K; ++i) {
      float* lg = w.logits.data() + static_cast<size_t>(i) * V;
      if (o.beam_no_repeat) {
        const int32_t last = live[i].seq[cur - 1];
        lg[last] = std::min(lg[last], kRepeatLogit);
      }
      float* ls = logsm.data() + static_cast<size_t>(i) * V;
      log_softmax(lg, V, ls);
      for (int v = 0; v < V; ++v) cand_lp[static_cast<size_t>(i) * V + v] = ls[v] + live[i].score;
    }
    top_k(cand_lp, C, idx);
    for (int j = 0; j < C; ++j) {
      topk_lp[j] = cand_lp[idx[j]];
      topk_beam[j] = idx[j] / V;
      const int32_t id = idx[j] % V;
      Beam& c = cand[j];
      c.seq = live[topk_beam[j]].seq;
      c.seq[cur] = id;
      c.logprob = live[topk_beam[j]].logprob;
      c.logprob[cur] = logsm[idx[j]];
      copy_outputs(c, live[topk_beam[j]], D, np2);
      newly[j] = id == o.eos_id;
      sel[j] = topk_lp[j] + (newly[j] ? kBeamNegInf : -0.f);
    }
    // live := top K of the unfinished candidates (ascending order, best last)
    top_k(sel, K, idx2);
    for (int i = 0; i < K; ++i) {
      const int j = idx2[K - 1 - i];
      Beam& b = live_next[i];
      b.seq = cand[j].seq;
      b.logprob = cand[j].logprob;
      copy_outputs(b, cand[j], D, np2);
      b.score = sel[j];
      parents[i] = topk_beam[j];
    }
    // finished := top K of old finished + newly finished candidates
    pool.assign(K + C, 0.f);
    for (int i = 0; i < K; ++i) pool[i] = fin[i].score;
    const float bp = brevity_penalty(o.alpha, cur);
    for (int j = 0; j < C; ++j) pool[K + j] = topk_lp[j] / bp + (newly[j] ? -0.f : kBeamNegInf);
    top_k(pool, K, idx2);
    for (int i = 0; i < K; ++i) {
      const int j = idx2[K - 1 - i];
      Beam& b = fin_next[i];
      const Beam& src = j < K ? fin[j] : cand[j - K];
      b.seq = src.seq;
      b.logprob = src.logprob;
      copy_outputs(b, src, D, np2);
      b.score = pool[j];
      b.finished = j < K ? fin[j].finished : newly[j - K] != 0;
    }
    std::swap(live, live_next);
    std::swap(fin, fin_next);
    decoder.reorder(state, parents.data());
    ++cur;
  }

  bool any = false;
  for (const Beam& b : fin) any = any || b.finished;
  std::vector<Beam>& out = any ? fin : live;
  DecodeResult r;
  for (const Beam& b : out) {
    r.beam_sequences.push_back(b.seq);
    r.beam_scores.push_back(b.score);
  }
  Beam& best = out[K - 1];
  // official prepare_text_features: the sequence up to its first EOS (the last slot always holds one)
  size_t k = 1;
  while (k < best.seq.size() && best.seq[k] != o.eos_id) ++k;
  PIXELLLM_CHECK(k < best.seq.size(), Internal, "beam_search: best sequence without EOS");
  if (!any && static_cast<int>(k) > best.fed) {
    // a live result: the last written word has not been fed yet; feed it for its hidden state / corners
    PIXELLLM_CHECK(static_cast<int>(k) == best.fed + 1 && best.fed == cur - 1, Internal,
                   "beam_search: unexpected live state");
    step_live(best.fed);
  }
  r.sequence.assign(best.seq.begin(), best.seq.begin() + static_cast<long>(k) + 1);
  r.tokens.assign(r.sequence.begin() + 1, r.sequence.end() - 1);
  r.score = best.score;
  r.hidden.assign(best.hidden.begin(), best.hidden.begin() + static_cast<long>(k) * D);
  r.corners.assign(best.corners.begin(), best.corners.begin() + static_cast<long>(k) * np2);
  for (size_t p = 1; p < k; ++p) {
    TokenEvent e = make_event(static_cast<int>(p) - 1, r.sequence[p], best.logprob[p],
                              r.corners.data() + p * np2, np);
    r.events.push_back(e);
    if (on_token) on_token(e);
  }
  finish(r, points, D);
  return r;
}

}  // namespace pixelllm::pipeline
