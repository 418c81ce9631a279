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

// The prefix of one prompt repeated for `rows` session rows (DecoderSession::prefill takes one row per sequence),
// built once before the loop. No context = one 0 token (the session rule).
struct Prefix {
  Prefix(const DecodeInput& in, const DecodeOptions& o, int rows) {
    const size_t per = static_cast<size_t>(in.n_visual) * in.visual_dim;
    visual.resize(per * rows);
    for (int r = 0; r < rows; ++r) std::copy(in.visual, in.visual + per, visual.begin() + per * r);
    n_context = in.context != nullptr && in.n_context > 0 ? in.n_context : 1;
    context.assign(static_cast<size_t>(n_context) * rows, 0);
    if (in.context != nullptr && in.n_context > 0)
      for (int r = 0; r < rows; ++r) std::copy(in.context, in.context + n_context, context.begin() + n_context * r);
    image_hw.resize(static_cast<size_t>(rows) * 2);
    for (int r = 0; r < rows; ++r) {
      image_hw[2 * r] = o.image_height;
      image_hw[2 * r + 1] = o.image_width;
    }
  }
  std::vector<float> visual, image_hw;
  std::vector<int32_t> context;
  int n_context = 1;
};

void validate(const DecodeInput& in, const DecodeOptions& o) {
  PIXELLLM_CHECK(o.max_length >= 2, InvalidArgument,
                 "decode: max_length " + std::to_string(o.max_length) + " must be >= 2 (BOS + the EOS slot)");
  PIXELLLM_CHECK(o.beams >= 1 && o.beams <= 16, LimitExceeded,
                 "decode: beams " + std::to_string(o.beams) + " outside 1..16");
  PIXELLLM_CHECK(o.per_node_beams >= 1 && o.per_node_beams * o.beams <= 64, LimitExceeded,
                 "decode: per_node_beams * beams must be within 1..64");
  const int v = o.vocab_size;
  PIXELLLM_CHECK(v >= 2, InvalidArgument, "decode: vocab_size must be >= 2");
  PIXELLLM_CHECK(o.num_points >= 1, InvalidArgument, "decode: num_points must be >= 1");
  PIXELLLM_CHECK(o.bos_id >= 0 && o.bos_id < v && o.eos_id >= 0 && o.eos_id < v, InvalidArgument,
                 "decode: bos/eos ids outside the vocabulary");
  PIXELLLM_CHECK(o.beams * o.per_node_beams <= v, InvalidArgument, "decode: more beam candidates than vocabulary");
  PIXELLLM_CHECK(std::isfinite(o.image_width) && std::isfinite(o.image_height) && o.image_width > 0 &&
                     o.image_height > 0,
                 InvalidArgument, "decode: image size must be positive");
  PIXELLLM_CHECK(in.visual != nullptr && in.n_visual >= 1 && in.visual_dim >= 1, InvalidArgument,
                 "decode: no visual tokens");
}

void finish(DecodeResult& r, int num_points) {
  r.positions = static_cast<int>(r.sequence.size()) - 1;
  r.corners.resize(static_cast<size_t>(r.positions) * num_points * 2);
  r.box = box_of(r.corners.data() + static_cast<size_t>(r.positions - 1) * num_points * 2, num_points);
}

}  // namespace

runtime::DecoderLimits decode_limits(const DecodeInput& input, const DecodeOptions& options, int max_text_tokens) {
  runtime::DecoderLimits lim;
  lim.max_rows = std::max(options.beams, 1);
  lim.max_context = input.context != nullptr && input.n_context > 0 ? input.n_context : 1;  // none = one 0 token
  lim.max_text = std::max(options.max_length - 1, max_text_tokens);
  return lim;
}

DecodeResult generate(runtime::DecoderSession& session, const DecodeInput& input, const DecodeOptions& options,
                      const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  return options.beams == 1 ? greedy_decode(session, input, options, on_token, cancel)
                            : beam_search(session, input, options, on_token, cancel);
}

// ---- greedy -----------------------------------------------------------------------------------------------------

DecodeResult greedy_decode(runtime::DecoderSession& session, const DecodeInput& in, const DecodeOptions& o,
                           const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  validate(in, o);
  PIXELLLM_CHECK(o.beams == 1, InvalidArgument, "greedy_decode: beams must be 1");
  const int V = o.vocab_size, np2 = o.num_points * 2;
  Prefix prefix(in, o, 1);
  std::vector<float> logits(V), logp(V);
  DecodeResult r;
  r.sequence.reserve(o.max_length);
  r.corners.resize(static_cast<size_t>(o.max_length) * np2);

  // Position 0 (BOS) through the prefill; its logits pick the first word.
  check_cancel(cancel);
  runtime::DecoderOutputs out;
  out.logits = o.max_length > 2 ? logits.data() : nullptr;
  out.corners = r.corners.data();
  session.prefill(prefix.visual.data(), 1, prefix.context.data(), prefix.n_context, &o.bos_id, 1,
                  prefix.image_hw.data(), out);
  r.sequence.push_back(o.bos_id);
  float total = 0.f;
  bool ended = false;
  int32_t tok = 0;
  float lp = 0.f;
  if (o.max_length > 2) {
    logits[o.bos_id] = std::min(logits[o.bos_id], kRepeatLogit);
    log_softmax(logits.data(), V, logp.data());
    tok = static_cast<int32_t>(std::max_element(logp.begin(), logp.end()) - logp.begin());
    lp = logp[tok];
  }
  // Slot cur takes the word chosen from position cur-1 (the loop ends at EOS); feeding the word gives its corners
  // and the next choice. The backend drives the steps (DecoderSession::run_greedy), slots 1 .. max_length-2; the
  // last one needs only the corners.
  int cur = 1;
  auto take = [&]() {
    total += lp;
    r.sequence.push_back(tok);
    if (tok == o.eos_id) {
      ended = true;
      return false;
    }
    r.tokens.push_back(tok);
    return true;
  };
  const int steps = o.max_length - 2;
  if (steps >= 1 && take()) {
    check_cancel(cancel);
    session.run_greedy(
        &tok, steps, o.eos_id,
        [&](const runtime::GreedyStep& g, int32_t* feed) {
          float* corners = r.corners.data() + static_cast<size_t>(cur) * np2;
          std::copy(g.corners.begin(), g.corners.begin() + np2, corners);
          TokenEvent e = make_event(static_cast<int>(r.tokens.size()) - 1, tok, lp, corners, o.num_points);
          r.events.push_back(e);
          if (on_token) on_token(e);
          if (++cur > steps) return false;
          tok = g.tokens[0];
          lp = g.logprobs[0];
          if (!take()) return false;
          feed[0] = tok;
          return true;
        },
        cancel);
  }
  if (!ended) r.sequence.push_back(o.eos_id);  // the never-written last slot
  r.score = total / static_cast<float>(std::max<size_t>(r.tokens.size(), 1));
  finish(r, o.num_points);
  return r;
}

// ---- teacher forcing --------------------------------------------------------------------------------------------

DecodeResult teacher_forced(runtime::DecoderSession& session, const DecodeInput& in, const DecodeOptions& o,
                            const std::vector<int32_t>& text, const TokenCallback& on_token,
                            const std::atomic<bool>& cancel) {
  validate(in, o);
  const int V = o.vocab_size, np2 = o.num_points * 2;
  PIXELLLM_CHECK(text.size() >= 2 && text[0] == o.bos_id, InvalidText,
                 "teacher_forced: text must start with BOS (" + std::to_string(o.bos_id) + ") and hold an EOS");
  size_t k = 1;
  while (k < text.size() && text[k] != o.eos_id) ++k;
  PIXELLLM_CHECK(k < text.size(), InvalidText,
                 "teacher_forced: text has no EOS (" + std::to_string(o.eos_id) + ")");
  for (size_t i = k + 1; i < text.size(); ++i)
    PIXELLLM_CHECK(text[i] == 0, InvalidText, "teacher_forced: only 0 padding may follow the EOS");
  for (size_t i = 0; i <= k; ++i)
    PIXELLLM_CHECK(text[i] >= 0 && text[i] < V, InvalidText, "teacher_forced: token id outside the vocabulary");
  Prefix prefix(in, o, 1);
  std::vector<float> logits(k * V), logp(V);
  DecodeResult r;
  r.sequence.assign(text.begin(), text.begin() + static_cast<long>(k) + 1);
  r.corners.resize(k * np2);
  check_cancel(cancel);
  runtime::DecoderOutputs out;
  out.logits = logits.data();
  out.corners = r.corners.data();
  // Positions 0..k-1 (BOS, words) in one prefill; position p's logits score the token at p + 1.
  session.prefill(prefix.visual.data(), 1, prefix.context.data(), prefix.n_context, text.data(),
                  static_cast<int>(k), prefix.image_hw.data(), out);
  float total = 0.f;
  for (size_t p = 1; p <= k; ++p) {
    log_softmax(logits.data() + (p - 1) * V, V, logp.data());
    const int32_t tok = text[p];
    total += logp[tok];
    if (p == k) break;  // EOS: scored, no event
    r.tokens.push_back(tok);
    TokenEvent e = make_event(static_cast<int>(p) - 1, tok, logp[tok], r.corners.data() + p * np2, o.num_points);
    r.events.push_back(e);
    if (on_token) on_token(e);
    check_cancel(cancel);
  }
  r.score = total / static_cast<float>(k);
  finish(r, o.num_points);
  return r;
}

// ---- beam search ------------------------------------------------------------------------------------------------

namespace {

struct Beam {
  std::vector<int32_t> seq;      // official buffer, max_length ids
  std::vector<float> corners;    // outputs of the positions fed so far (fed = number of positions)
  std::vector<float> logprob;    // log-prob of the token written at each position
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

void copy_outputs(Beam& dst, const Beam& src, int np2) {
  dst.fed = src.fed;
  std::copy(src.corners.begin(), src.corners.begin() + static_cast<long>(src.fed) * np2, dst.corners.begin());
}

}  // namespace

DecodeResult beam_search(runtime::DecoderSession& session, const DecodeInput& in, const DecodeOptions& o,
                         const TokenCallback& on_token, const std::atomic<bool>& cancel) {
  validate(in, o);
  const int K = o.beams, C = o.per_node_beams * o.beams, L = o.max_length;
  const int V = o.vocab_size, np = o.num_points, np2 = np * 2;
  Prefix prefix(in, o, K);
  std::vector<float> logits(static_cast<size_t>(K) * V), corners(static_cast<size_t>(K) * np2);

  auto fresh = [&]() {
    Beam b;
    b.seq.assign(L, o.eos_id);
    b.seq[0] = o.bos_id;
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
  std::vector<int> idx, idx2;
  std::vector<int32_t> parents(K), feed(K);
  std::vector<float> topk_lp(C);
  std::vector<int> topk_beam(C);
  std::vector<uint8_t> newly(C);
  pool.reserve(K + C);
  runtime::DecoderOutputs out;
  out.logits = logits.data();
  out.corners = corners.data();

  auto step_live = [&](int pos) {  // feed live[i].seq[pos]; record outputs at `pos` (position 0 = the prefill)
    check_cancel(cancel);
    for (int i = 0; i < K; ++i) feed[i] = live[i].seq[pos];
    if (pos == 0)
      session.prefill(prefix.visual.data(), K, prefix.context.data(), prefix.n_context, feed.data(), 1,
                      prefix.image_hw.data(), out);
    else
      session.step(feed.data(), out);
    for (int i = 0; i < K; ++i) {
      std::memcpy(live[i].corners.data() + static_cast<size_t>(pos) * np2,
                  corners.data() + static_cast<size_t>(i) * np2, sizeof(float) * np2);
      live[i].fed = pos + 1;
    }
  };

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
      float* lg = logits.data() + static_cast<size_t>(i) * V;
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
      copy_outputs(c, live[topk_beam[j]], np2);
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
      copy_outputs(b, cand[j], np2);
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
      copy_outputs(b, src, np2);
      b.score = pool[j];
      b.finished = j < K ? fin[j].finished : newly[j - K] != 0;
    }
    std::swap(live, live_next);
    std::swap(fin, fin_next);
    session.reorder(parents.data());
    ++cur;
  }

  bool any = false;
  for (const Beam& b : fin) any = any || b.finished;
  std::vector<Beam>& res = any ? fin : live;
  DecodeResult r;
  for (const Beam& b : res) {
    r.beam_sequences.push_back(b.seq);
    r.beam_scores.push_back(b.score);
  }
  Beam& best = res[K - 1];
  // official prepare_text_features: the sequence up to its first EOS (the last slot always holds one)
  size_t k = 1;
  while (k < best.seq.size() && best.seq[k] != o.eos_id) ++k;
  PIXELLLM_CHECK(k < best.seq.size(), Internal, "beam_search: best sequence without EOS");
  if (!any && static_cast<int>(k) > best.fed) {
    // a live result: the last written word has not been fed yet; feed it for its corners
    PIXELLLM_CHECK(static_cast<int>(k) == best.fed + 1 && best.fed == cur - 1, Internal,
                   "beam_search: unexpected live state");
    step_live(best.fed);
  }
  r.sequence.assign(best.seq.begin(), best.seq.begin() + static_cast<long>(k) + 1);
  r.tokens.assign(r.sequence.begin() + 1, r.sequence.end() - 1);
  r.score = best.score;
  r.corners.assign(best.corners.begin(), best.corners.begin() + static_cast<long>(k) * np2);
  for (size_t p = 1; p < k; ++p) {
    TokenEvent e = make_event(static_cast<int>(p) - 1, r.sequence[p], best.logprob[p],
                              r.corners.data() + p * np2, np);
    r.events.push_back(e);
    if (on_token) on_token(e);
  }
  finish(r, np);
  return r;
}

}  // namespace pixelllm::pipeline
