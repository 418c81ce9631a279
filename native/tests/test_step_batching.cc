// In-flight batching of decode steps: model::TextDecoder::step_rows (several requests' states advanced in one
// call) against one step() per state, and runtime::cpu::StepBatcher (concurrent sessions of the CPU backend
// batched together) against the same decodes run one after another: tokens identical, log-probs and points
// within 1e-5; a cancelled request leaves the others of its batch untouched. Fixtures: see test_text_fixture.h.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/decoding.h"
#include "runtime/cpu/cpu_decoder.h"
#include "tests/test_text_fixture.h"

using namespace pixelllm;
using namespace pixelllm::test::text;

namespace {

constexpr double kExact = 1e-5;

// max |a - b| / max(1, |b|)
double max_rel(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i)
    m = std::max(m, std::fabs(double(a[i]) - b[i]) / std::max(1.0, std::fabs(double(b[i]))));
  return m;
}

// One request of the model-level test: its own prefix (context or not, visual scaled), beams and start position.
struct Req {
  bool context;
  float visual_scale;
  int sequences;
  int warm_steps;  // steps before the compared ones (positions differ per request)
};

std::unique_ptr<model::TextDecoderState> make_state(const TextCase& c, const Req& q, std::vector<float>& visual) {
  model::TextDecoderLimits lim;
  lim.max_visual = c.n_visual;
  lim.max_context = static_cast<int>(c.context.size());
  lim.max_text = 12;
  lim.max_sequences = q.sequences;
  auto s = c.decoder->new_state(lim);
  visual = c.visual;
  for (float& v : visual) v *= q.visual_scale;
  c.decoder->prefill(*s, visual.data(), c.n_visual, q.context ? c.context.data() : nullptr,
                     q.context ? static_cast<int>(c.context.size()) : 0, q.sequences);
  std::vector<int32_t> t(q.sequences, c.bos);
  for (int i = 0; i < q.warm_steps; ++i) c.decoder->step(*s, t.data(), nullptr, nullptr);
  return s;
}

struct Decoding {
  explicit Decoding(const TextCase& c) : c(c), backend(*c.decoder, *c.points, c.n_visual, compute) {}
  pipeline::DecodeOptions options(int beams) const {
    pipeline::DecodeOptions o;
    o.max_length = c.max_len;
    o.bos_id = c.bos;
    o.eos_id = c.eos;
    o.beams = beams;
    o.image_width = c.w;
    o.image_height = c.h;
    o.vocab_size = c.decoder->vocab_size();
    o.num_points = c.points->num_points();
    return o;
  }
  const TextCase& c;
  std::mutex compute;
  runtime::cpu::CpuTextDecoder backend;
};

// Request i of the backend-level tests: its own visual tokens (scaled), context on odd i, beams on every third.
struct Request {
  std::vector<float> visual;
  pipeline::DecodeInput in;
  pipeline::DecodeOptions o;
};

Request make_request(const Decoding& d, int i, bool beams) {
  Request r;
  r.visual = d.c.visual;
  for (float& v : r.visual) v *= 1.f + 0.05f * static_cast<float>(i);
  r.in.visual = r.visual.data();
  r.in.n_visual = d.c.n_visual;
  r.in.visual_dim = d.c.decoder->visual_dim();
  if (i % 2 == 1) {
    r.in.context = d.c.context.data();
    r.in.n_context = static_cast<int>(d.c.context.size());
  }
  r.o = d.options(beams && i % 3 == 2 ? 3 : 1);
  return r;
}

void check_same(const pipeline::DecodeResult& got, const pipeline::DecodeResult& want, const std::string& what) {
  CHECK(got.sequence == want.sequence);
  CHECK_EQ(got.events.size(), want.events.size());
  double lp = std::fabs(double(got.score) - want.score);
  for (size_t i = 0; i < got.events.size() && i < want.events.size(); ++i)
    lp = std::max(lp, std::fabs(double(got.events[i].logprob) - want.events[i].logprob));
  const double pts = got.corners.size() == want.corners.size()
                         ? max_rel(got.corners.data(), want.corners.data(), got.corners.size())
                         : 1.0;
  if (!(lp <= kExact && pts <= kExact))
    test::report(__FILE__, __LINE__,
                 what + ": log-probs differ by " + std::to_string(lp) + ", points by " + std::to_string(pts));
}

// Requests 0..n-1 (make_request) and their results decoded one after another, each on a fresh session.
struct Sequential {
  std::vector<Request> reqs;
  std::vector<pipeline::DecodeResult> want;
};
Sequential decode_sequentially(const Decoding& d, int n, bool beams) {
  Sequential q;
  std::atomic<bool> no_cancel{false};
  for (int i = 0; i < n; ++i) q.reqs.push_back(make_request(d, i, beams));
  for (const Request& r : q.reqs) {
    auto s = d.backend.new_session(pipeline::decode_limits(r.in, r.o));
    q.want.push_back(pipeline::generate(*s, r.in, r.o, nullptr, no_cancel));
  }
  return q;
}

// Decodes request i on thread i with on_token(i) (may be empty), all at once: the compute lock is held while the
// threads start, so their sessions queue behind it and their steps share batches. Returns each thread's error
// message ("" when it succeeded); got[i] receives the results.
std::vector<std::string> decode_together(Decoding& d, const std::vector<Request>& reqs,
                                         std::vector<pipeline::DecodeResult>& got,
                                         const std::function<pipeline::TokenCallback(int)>& on_token) {
  const size_t n = reqs.size();
  std::vector<std::string> errors(n);
  got.assign(n, {});
  std::atomic<bool> no_cancel{false};
  std::unique_lock<std::mutex> hold(d.compute);  // sessions prefill under it: they all wait here first
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        auto s = d.backend.new_session(pipeline::decode_limits(reqs[i].in, reqs[i].o));
        got[i] = pipeline::generate(*s, reqs[i].in, reqs[i].o,
                                    on_token ? on_token(static_cast<int>(i)) : pipeline::TokenCallback(), no_cancel);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  hold.unlock();
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

// Model level: 3 states at different positions (one with 2 sequences, one with context) advanced together by
// step_rows == each advanced by step(), for 4 steps (logits, hidden; the states stay interchangeable).
TEST(step_rows_equals_step) {
  const Req reqs[] = {{false, 1.0f, 1, 0}, {true, 1.1f, 2, 3}, {false, 0.9f, 1, 5}};
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    const int V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    std::vector<std::unique_ptr<model::TextDecoderState>> solo, batched;
    std::vector<std::vector<float>> visual(6);
    int total = 0;
    for (int i = 0; i < 3; ++i) {
      solo.push_back(make_state(c, reqs[i], visual[i]));
      batched.push_back(make_state(c, reqs[i], visual[3 + i]));
      total += reqs[i].sequences;
    }
    auto ws = c.decoder->new_workspace(total);
    test::Rng rng(7);
    double err_logits = 0, err_hidden = 0;
    for (int step = 0; step < 4; ++step) {
      std::vector<int32_t> tokens(total);
      for (auto& t : tokens) t = static_cast<int32_t>(rng.next() % static_cast<uint32_t>(V));
      std::vector<float> want_l(size_t(total) * V), want_h(size_t(total) * D), got_l(want_l.size()),
          got_h(want_h.size());
      for (int i = 0, row = 0; i < 3; ++i) {
        c.decoder->step(*solo[i], tokens.data() + row, want_l.data() + size_t(row) * V,
                        want_h.data() + size_t(row) * D);
        row += reqs[i].sequences;
      }
      std::vector<model::TextDecoderState*> states = {batched[0].get(), batched[1].get(), batched[2].get()};
      c.decoder->step_rows(states.data(), 3, tokens.data(), got_l.data(), got_h.data(), ws.get());
      err_logits = std::max(err_logits, max_rel(got_l.data(), want_l.data(), got_l.size()));
      err_hidden = std::max(err_hidden, max_rel(got_h.data(), want_h.data(), got_h.size()));
      for (int i = 0; i < 3; ++i) CHECK_EQ(batched[i]->position(), solo[i]->position());
    }
    std::cout << "  " << name << ": max rel diff logits " << err_logits << " hidden " << err_hidden << "\n";
    CHECK(err_logits <= kExact);
    CHECK(err_hidden <= kExact);
    // Bad input of one state: refused before any state changes.
    std::vector<model::TextDecoderState*> states = {batched[0].get(), batched[1].get()};
    std::vector<int32_t> bad = {1, 2, V};
    const int p0 = batched[0]->position();
    CHECK_THROWS_CODE(c.decoder->step_rows(states.data(), 2, bad.data(), nullptr, nullptr, ws.get()), InvalidText,
                      "vocabulary");
    CHECK_EQ(batched[0]->position(), p0);
    // The same state twice is refused.
    std::vector<model::TextDecoderState*> twice = {batched[0].get(), batched[0].get()};
    std::vector<int32_t> ok = {1, 1};
    CHECK_THROWS_CODE(c.decoder->step_rows(twice.data(), 2, ok.data(), nullptr, nullptr, ws.get()), InvalidArgument,
                      "twice");
    CHECK_EQ(batched[0]->position(), p0);
  }
}

// Backend level: 8 sessions (greedy, beam search on every third with 3 beams as rows, contexts on odd ones)
// decoded on 8 threads at once == the same 8 decoded one after another. The compute lock is held while the
// threads queue, so their steps are forced into shared batches (checked with the batcher's statistics).
TEST(step_batcher_concurrent_equals_sequential) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    constexpr int kN = 8;
    const Sequential q = decode_sequentially(d, kN, true);
    const auto& want = q.want;
    std::vector<pipeline::DecodeResult> got;
    const auto before = d.backend.batcher().stats();
    const std::vector<std::string> errors = decode_together(d, q.reqs, got, nullptr);
    const auto after = d.backend.batcher().stats();
    std::cout << "  " << name << ": " << (after.batches - before.batches) << " batches, "
              << (after.rows - before.rows) << " rows, largest " << after.max_batch_rows << "\n";
    CHECK(after.max_batch_rows >= 2);
    CHECK(after.batches - before.batches < after.rows - before.rows);
    for (int i = 0; i < kN; ++i) {
      CHECK_EQ(errors[i], std::string());
      check_same(got[i], want[i], std::string(name) + " request " + std::to_string(i));
    }
  }
}

// A cancelled request drops out of the batch; the others finish with the sequential results. A request with a
// token outside the vocabulary fails alone (checked before it joins a batch).
TEST(step_batcher_cancel_one) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    constexpr int kN = 4;
    const Sequential q = decode_sequentially(d, kN, false);
    const auto& reqs = q.reqs;
    const auto& want = q.want;
    std::vector<pipeline::DecodeResult> got(kN);
    std::vector<std::atomic<bool>> cancel(kN);
    std::vector<std::string> codes(kN);
    std::vector<std::thread> threads;
    for (int i = 0; i < kN; ++i)
      threads.emplace_back([&, i] {
        try {
          auto s = d.backend.new_session(pipeline::decode_limits(reqs[i].in, reqs[i].o));
          int seen = 0;
          got[i] = pipeline::generate(*s, reqs[i].in, reqs[i].o,
                                      [&](const pipeline::TokenEvent&) {
                                        if (i == 1 && ++seen == 1) cancel[i] = true;
                                      },
                                      cancel[i]);
        } catch (const core::Error& e) {
          codes[i] = core::error_code_name(e.code());
        }
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kN; ++i) {
      if (i == 1 && want[i].tokens.size() >= 2) {
        CHECK_EQ(codes[i], std::string("ABORTED"));
        continue;
      }
      CHECK_EQ(codes[i], std::string());
      check_same(got[i], want[i], std::string(name) + " request " + std::to_string(i));
    }
    // A bad token is refused by its session, not by the batch.
    auto s = d.backend.new_session(pipeline::decode_limits(reqs[0].in, reqs[0].o));
    runtime::DecoderOutputs out;
    std::vector<float> hw = {c.h, c.w};
    const int32_t one = 0;
    s->prefill(reqs[0].visual.data(), 1, &one, 1, &c.bos, 1, hw.data(), out);
    const int32_t bad = c.decoder->vocab_size();
    CHECK_THROWS_CODE(s->step(&bad, out), InvalidText, "vocabulary");
  }
}

namespace {

// A session whose greedy loop is DecoderSession's default (one step_greedy / step per token on the calling
// thread, what the TensorRT backend runs), over a CPU session for everything else.
class DefaultLoopSession final : public runtime::DecoderSession {
 public:
  DefaultLoopSession(std::unique_ptr<runtime::DecoderSession> inner, int vocab, int corners)
      : inner_(std::move(inner)), vocab_(vocab), corners_(corners) {}
  void prefill(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text, int n_text,
               const float* image_hw, const runtime::DecoderOutputs& out) override {
    inner_->prefill(visual, rows, context, n_context, text, n_text, image_hw, out);
  }
  void step(const int32_t* tokens, const runtime::DecoderOutputs& out) override { inner_->step(tokens, out); }
  void reorder(const int32_t* parents) override { inner_->reorder(parents); }
  int position() const override { return inner_->position(); }
  int rows() const override { return inner_->rows(); }
  runtime::GreedyStep step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) override {
    return inner_->step_greedy(tokens, finished, eos_id);
  }

 protected:
  int vocab_size() const override { return vocab_; }
  int corner_values() const override { return corners_; }

 private:
  std::unique_ptr<runtime::DecoderSession> inner_;
  int vocab_, corners_;
};

}  // namespace

// The CPU backend's greedy loop (run by the step batcher) == DecoderSession's default loop, bit for bit for a lone
// request (both step through the batch-1 path), at full length and at the shortest lengths (max_length 3: the one
// step is the corners-only last step; 2: no step at all).
TEST(greedy_loop_cpu_equals_default) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    std::atomic<bool> no_cancel{false};
    for (int max_len : {c.max_len, 4, 3, 2}) {
      for (int i = 0; i < 2; ++i) {
        Request r = make_request(d, i, false);
        r.o.max_length = max_len;
        auto cpu = d.backend.new_session(pipeline::decode_limits(r.in, r.o));
        std::vector<pipeline::TokenEvent> seen;
        const pipeline::DecodeResult got =
            pipeline::generate(*cpu, r.in, r.o, [&](const pipeline::TokenEvent& e) { seen.push_back(e); }, no_cancel);
        DefaultLoopSession def(d.backend.new_session(pipeline::decode_limits(r.in, r.o)), c.decoder->vocab_size(),
                               2 * c.points->num_points());
        const pipeline::DecodeResult want = pipeline::generate(def, r.in, r.o, nullptr, no_cancel);
        const std::string what = std::string(name) + " max_length " + std::to_string(max_len);
        CHECK(got.sequence == want.sequence);
        CHECK(got.corners == want.corners);
        CHECK_EQ(got.score, want.score);
        CHECK_EQ(seen.size(), got.events.size());
        for (size_t k = 0; k < seen.size() && k < got.events.size(); ++k) {
          CHECK_EQ(seen[k].token, got.events[k].token);
          CHECK_EQ(seen[k].logprob, want.events[k].logprob);
        }
        CHECK(got.tokens.size() <= static_cast<size_t>(std::max(max_len - 2, 0)));
      }
    }
  }
}

// A greedy loop whose callback throws ends alone, with the callback's exception; the loops batched with it
// finish with the sequential results. The compute lock is held while the threads queue, so the loops share
// batches (the leader runs every loop's callback, whichever thread it is).
TEST(greedy_loop_callback_error_ends_only_its_loop) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    constexpr int kN = 4;
    const Sequential q = decode_sequentially(d, kN, false);
    const auto& want = q.want;
    if (want[2].tokens.size() < 2) continue;  // the failing request needs a second word
    std::vector<int> calls(kN, 0);
    std::vector<pipeline::DecodeResult> got;
    const auto before = d.backend.batcher().stats();
    const std::vector<std::string> errors = decode_together(d, q.reqs, got, [&](int i) -> pipeline::TokenCallback {
      return [&calls, i](const pipeline::TokenEvent&) {
        if (++calls[i] == 2 && i == 2) throw std::runtime_error("listener failed");
      };
    });
    const auto after = d.backend.batcher().stats();
    CHECK(after.max_batch_rows >= 2);
    std::cout << "  " << name << ": " << (after.batches - before.batches) << " batches, "
              << (after.handoffs - before.handoffs) << " hand-offs\n";
    for (int i = 0; i < kN; ++i) {
      if (i == 2) {
        CHECK_EQ(errors[i], std::string("listener failed"));
        CHECK_EQ(calls[i], 2);  // no callback after the one that threw
        continue;
      }
      CHECK_EQ(errors[i], std::string());
      CHECK_EQ(static_cast<size_t>(calls[i]), want[i].events.size());
      check_same(got[i], want[i], std::string(name) + " request " + std::to_string(i));
    }
  }
}

// The mask path's text states by continuing the decode's session (DecoderSession::continue_text_states) == the
// official full pass (TextDecoderBackend::forward, context padded to the row length as decode_mask pads it): GIT
// bit for bit after a greedy decode and after teacher forcing; T5 declines (its full pass is not its steps), as do
// a reordered beam session and a row that does not start with the tokens fed (the session left as it was).
TEST(continue_text_states_equals_full_pass) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    const bool git = std::string(c.decoder->name()) == "git_decoder";
    const int D = c.decoder->hidden_size(), L = c.max_len;
    std::atomic<bool> no_cancel{false};
    for (int mode = 0; mode < 2; ++mode) {  // 0: greedy, 1: teacher forcing of the golden text
      Request r = make_request(d, 1, false);  // with context
      auto s = d.backend.new_session(pipeline::decode_limits(r.in, r.o, L));
      const pipeline::DecodeResult res =
          mode == 0 ? pipeline::generate(*s, r.in, r.o, nullptr, no_cancel)
                    : pipeline::teacher_forced(*s, r.in, r.o, c.text, nullptr, no_cancel);
      std::vector<int32_t> row(res.sequence);
      row.resize(std::max<size_t>(row.size(), size_t(L)), 0);
      const int n = static_cast<int>(row.size());
      std::vector<int32_t> ctx(c.context);
      ctx.resize(ctx.size() + 5, 0);  // padded, as the mask path pads it
      const float hw[2] = {c.h, c.w};
      std::vector<float> want(size_t(n) * D), got(size_t(n) * D);
      runtime::DecoderOutputs out;
      out.hidden = want.data();
      d.backend.forward(r.visual.data(), 1, ctx.data(), static_cast<int>(ctx.size()), row.data(), n, hw, out);
      std::vector<int32_t> wrong(row);
      wrong[1] = (wrong[1] + 1) % c.decoder->vocab_size();
      const int pos = s->position();
      CHECK(!s->continue_text_states(wrong.data(), n, got.data()));
      CHECK_EQ(s->position(), pos);
      const bool ok = s->continue_text_states(row.data(), n, got.data());
      CHECK_EQ(ok, git);
      if (!ok) continue;
      double worst = 0;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
      std::cout << "  " << name << (mode == 0 ? " greedy" : " teacher-forced") << ": " << pos << " positions reused of "
                << n << ", max abs diff " << worst << "\n";
      CHECK_EQ(worst, 0.0);
    }
    // Beam search reorders its rows: the session declines.
    Request r = make_request(d, 0, false);
    r.o = d.options(3);
    auto s = d.backend.new_session(pipeline::decode_limits(r.in, r.o, L));
    const pipeline::DecodeResult res = pipeline::generate(*s, r.in, r.o, nullptr, no_cancel);
    std::vector<int32_t> row(res.sequence);
    row.resize(std::max<size_t>(row.size(), size_t(L)), 0);
    std::vector<float> h(row.size() * D);
    CHECK(!s->continue_text_states(row.data(), static_cast<int>(row.size()), h.data()));
  }
}
