// Text side, decoding level (pipeline/decoding over the CPU backend's DecoderSession = model text decoder + point
// head): greedy captioning and referring against the official golden outputs, beam search against the reference's
// official beam search, streaming events and cancellation. Fixtures: see test_text_fixture.h.
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/decoding.h"
#include "runtime/cpu/cpu_decoder.h"
#include "tests/test_text_fixture.h"

using namespace pixelllm;
using namespace pixelllm::test::text;

namespace {

struct Decoding {
  explicit Decoding(const TextCase& c) : c(c), backend(*c.decoder, *c.points, c.n_visual, compute) {}

  pipeline::DecodeInput input(bool with_context) const {
    pipeline::DecodeInput in;
    in.visual = c.visual.data();
    in.n_visual = c.n_visual;
    in.visual_dim = c.decoder->visual_dim();
    if (with_context) {
      in.context = c.context.data();
      in.n_context = static_cast<int>(c.context.size());
    }
    return in;
  }
  pipeline::DecodeOptions options(int beams = 1, int per_node = 2) const {
    pipeline::DecodeOptions o;
    o.max_length = c.max_len;
    o.bos_id = c.bos;
    o.eos_id = c.eos;
    o.beams = beams;
    o.per_node_beams = per_node;
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

std::vector<float> box_vec(const pipeline::Box& b) { return {b.x0, b.y0, b.x1, b.y1}; }

}  // namespace

// Greedy captioning (golden out_cap_*, no context): identical tokens, score, box, streamed corners of the fed
// positions; and every position of the official point pass (full forward over the cleaned buffer).
TEST(text_golden_greedy) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    std::cout << "  " << name << "\n";
    Decoding d(c);
    pipeline::DecodeInput in = d.input(false);
    pipeline::DecodeOptions o = d.options();
    auto session = d.backend.new_session(pipeline::decode_limits(in, o));
    std::atomic<bool> cancel{false};
    std::vector<pipeline::TokenEvent> streamed;
    pipeline::DecodeResult r = pipeline::greedy_decode(
        *session, in, o, [&](const pipeline::TokenEvent& e) { streamed.push_back(e); }, cancel);
    std::vector<int32_t> golden = clean_after_eos(c.ids("golden_cap_text_tokens"), c.eos);
    std::vector<int32_t> ours = r.sequence;
    ours.resize(golden.size(), 0);
    CHECK(ours == golden);
    CHECK_EQ(streamed.size(), r.tokens.size());
    CHECK_EQ(r.events.size(), r.tokens.size());
    for (size_t i = 0; i < streamed.size() && i < r.tokens.size(); ++i) {
      CHECK_EQ(streamed[i].token, r.tokens[i]);
      CHECK_EQ(streamed[i].index, static_cast<int>(i));
    }
    const float gold_score = c.get("golden_cap_log_probs").data()[0];
    std::cout << "    score " << r.score << " golden " << gold_score << "\n";
    CHECK_NEAR(r.score, gold_score, kTol * std::fabs(gold_score));
    check_box(box_vec(r.box).data(), c.get("golden_cap_detection_boxes"), std::string(name) + " cap");
    check_rows(r.corners.data(), c.get("golden_cap_point_coords"), r.positions, "cap corners (streamed)");
    // Official point pass over the whole cleaned buffer (all max_len positions), model level.
    const int L = c.max_len, D = c.decoder->hidden_size();
    std::vector<float> hidden(size_t(L) * D), corners(size_t(L) * 4);
    c.decoder->forward(c.visual.data(), c.n_visual, nullptr, 0, golden.data(), L, nullptr, hidden.data());
    c.points->predict(hidden.data(), L, c.w, c.h, corners.data(), nullptr);
    check_rows(corners.data(), c.get("golden_cap_point_coords"), L, "cap corners (full pass)");
  }
}

// Referring (golden out_ref_*): teacher-forced expression with the context; box from the step before EOS.
TEST(text_golden_refer) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    std::cout << "  " << name << "\n";
    Decoding d(c);
    pipeline::DecodeInput in = d.input(true);
    pipeline::DecodeOptions o = d.options();
    auto session = d.backend.new_session(pipeline::decode_limits(in, o, static_cast<int>(c.text.size())));
    std::atomic<bool> cancel{false};
    int calls = 0;
    pipeline::DecodeResult r =
        pipeline::teacher_forced(*session, in, o, c.text, [&](const pipeline::TokenEvent&) { ++calls; }, cancel);
    CHECK_EQ(calls, static_cast<int>(r.tokens.size()));
    check_box(box_vec(r.box).data(), c.get("golden_ref_detection_boxes"), std::string(name) + " ref");
    check_rows(r.corners.data(), c.get("golden_ref_point_coords"), r.positions, "ref corners (streamed)");
    const int L = static_cast<int>(c.text.size()), D = c.decoder->hidden_size();
    std::vector<float> hidden(size_t(L) * D), corners(size_t(L) * 4);
    c.decoder->forward(c.visual.data(), c.n_visual, c.context.data(), static_cast<int>(c.context.size()),
                       c.text.data(), L, nullptr, hidden.data());
    c.points->predict(hidden.data(), L, c.w, c.h, corners.data(), nullptr);
    check_rows(corners.data(), c.get("golden_ref_point_coords"), L, "ref corners (full pass)");
  }
}

// Beam search against the reference's official beam search: every beam token-identical, scores, best box/corners.
TEST(text_reference_beam) {
  struct Setup {
    const char* tag;
    int beams, per_node;
    bool context;
  };
  const Setup setups[] = {{"beam2", 2, 2, false}, {"beam4", 4, 2, false}, {"beam3c", 3, 1, true}};
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    for (const Setup& s : setups) {
      const std::string tag = s.tag;
      pipeline::DecodeInput in = d.input(s.context);
      pipeline::DecodeOptions o = d.options(s.beams, s.per_node);
      auto session = d.backend.new_session(pipeline::decode_limits(in, o));
      std::atomic<bool> cancel{false};
      int calls = 0;
      pipeline::DecodeResult r =
          pipeline::generate(*session, in, o, [&](const pipeline::TokenEvent&) { ++calls; }, cancel);
      CHECK_EQ(calls, static_cast<int>(r.tokens.size()));
      core::Tensor ref_tokens = c.get("ref_" + tag + "_tokens");
      core::Tensor ref_scores = c.get("ref_" + tag + "_scores");
      CHECK_EQ(static_cast<int64_t>(r.beam_sequences.size()), ref_tokens.dim(0));
      bool same = static_cast<int64_t>(r.beam_sequences.size()) == ref_tokens.dim(0);
      for (size_t b = 0; same && b < r.beam_sequences.size(); ++b)
        for (int i = 0; i < c.max_len; ++i)
          same = same && r.beam_sequences[b][i] == static_cast<int32_t>(ref_tokens.data()[b * c.max_len + i]);
      std::cout << "  " << name << " " << tag << " best:";
      for (int32_t t : r.sequence) std::cout << " " << t;
      std::cout << "  score " << r.score << "\n";
      if (!same) test::report(__FILE__, __LINE__, std::string(name) + " " + tag + ": beams differ from the reference");
      double serr = test::rel_l2(r.beam_scores.data(), ref_scores.data(), ref_scores.numel());
      if (!(serr <= kTol)) test::report(__FILE__, __LINE__, tag + " scores rel L2 " + std::to_string(serr));
      check_box(box_vec(r.box).data(), c.get("ref_" + tag + "_detection_boxes"), std::string(name) + " " + tag);
      check_rows(r.corners.data(), c.get("ref_" + tag + "_point_coords"), r.positions, tag + " corners");
    }
  }
}

// The cancel flag aborts between steps; malformed teacher-forced text is refused before any compute.
TEST(text_decoding_cancel_and_errors) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    Decoding d(c);
    pipeline::DecodeInput in = d.input(false);
    pipeline::DecodeOptions o = d.options();
    auto session = d.backend.new_session(pipeline::decode_limits(in, o));
    std::atomic<bool> cancel{false};
    int seen = 0;
    CHECK_THROWS_CODE(pipeline::greedy_decode(*session, in, o,
                                              [&](const pipeline::TokenEvent&) {
                                                if (++seen == 2) cancel = true;
                                              },
                                              cancel),
                      Aborted, "cancel");
    CHECK_EQ(seen, 2);
    cancel = false;
    std::vector<int32_t> no_eos = {c.bos, 5, 6};
    CHECK_THROWS_CODE(pipeline::teacher_forced(*session, in, o, no_eos, nullptr, cancel), InvalidText, "EOS");
    std::vector<int32_t> junk_after_eos = {c.bos, 5, c.eos, 7};
    CHECK_THROWS_CODE(pipeline::teacher_forced(*session, in, o, junk_after_eos, nullptr, cancel), InvalidText,
                      "padding");
    // the session is reusable after an aborted decode
    pipeline::DecodeResult r = pipeline::greedy_decode(*session, in, o, nullptr, cancel);
    std::vector<int32_t> golden = clean_after_eos(c.ids("golden_cap_text_tokens"), c.eos);
    std::vector<int32_t> ours = r.sequence;
    ours.resize(golden.size(), 0);
    CHECK(ours == golden);
  }
}
