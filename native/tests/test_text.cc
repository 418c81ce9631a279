// Text side (git_decoder | t5, point_head, pipeline/decoding) against the official golden outputs and the reference
// fixtures (engines/reference/scripts/fixtures_text.py writes build/fixtures/golden/<case>/: config.json +
// model.safetensors + text.safetensors). Skips with a message when the fixtures are absent.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "model/git_decoder.h"
#include "model/point_head.h"
#include "model/t5.h"
#include "pipeline/decoding.h"
#include "tests/test.h"

namespace fs = std::filesystem;
using namespace pixelllm;

namespace {

const char* const kCases[] = {"bert_s0_h384", "bert_s1_h300", "t5_s0_h384", "t5_s1_h300"};
constexpr double kTol = 1e-4;

fs::path fixtures_root() {
  if (const char* env = std::getenv("PIXELLLM_FIXTURES")) return env;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "build" / "fixtures" / "golden")) return p / "build" / "fixtures" / "golden";
    if (p == p.parent_path()) break;
  }
  return {};
}

struct TextCase {
  std::string name;
  core::Json config;
  std::shared_ptr<core::SafeTensors> weights, data;
  std::unique_ptr<model::TextDecoder> decoder;
  std::unique_ptr<model::PointHead> points;
  std::vector<float> visual;
  int n_visual = 0;
  std::vector<int32_t> context, text;
  float h = 0, w = 0;
  int max_len = 0;
  int32_t bos = 0, eos = 0;

  core::Tensor get(const std::string& key) const { return data->get(key); }
  std::vector<int32_t> ids(const std::string& key) const {
    core::Tensor t = data->get(key);
    std::vector<int32_t> out(t.numel());
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<int32_t>(t.data()[i]);
    return out;
  }
  pipeline::DecodeInput input(bool with_context) const {
    pipeline::DecodeInput in;
    in.visual = visual.data();
    in.n_visual = n_visual;
    if (with_context) {
      in.context = context.data();
      in.n_context = static_cast<int>(context.size());
    }
    return in;
  }
  pipeline::DecodeOptions options(int beams = 1, int per_node = 2) const {
    pipeline::DecodeOptions o;
    o.max_length = max_len;
    o.bos_id = bos;
    o.eos_id = eos;
    o.beams = beams;
    o.per_node_beams = per_node;
    o.image_width = w;
    o.image_height = h;
    return o;
  }
};

bool load_case(const std::string& name, TextCase& c) {
  fs::path root = fixtures_root();
  fs::path dir = root / name;
  if (root.empty() || !fs::exists(dir / "text.safetensors")) {
    std::cout << "  SKIP " << name << ": no fixtures (run engines/reference/scripts/fixtures_text.py; looked in "
              << (root.empty() ? std::string("build/fixtures/golden") : dir.string()) << ")\n";
    return false;
  }
  c.name = name;
  c.config = core::parse_json_file((dir / "config.json").string());
  c.weights = core::SafeTensors::open((dir / "model.safetensors").string());
  c.data = core::SafeTensors::open((dir / "text.safetensors").string());
  core::JsonReader top(c.config, "config.json");
  const std::string head = top.get_string("text_decoder");
  if (head == "git_decoder")
    c.decoder = model::GitDecoder::load(top.object("git_decoder"), *c.weights);
  else
    c.decoder = model::T5::load(top.object("t5"), *c.weights);
  c.points = model::PointHead::load(top.object("point_head"), *c.weights);
  core::Tensor vis = c.get("visual");
  c.n_visual = static_cast<int>(vis.dim(0));
  c.visual.assign(vis.data(), vis.data() + vis.numel());
  c.context = c.ids("context");
  c.text = c.ids("text_tokens");
  core::Tensor hw = c.get("valid_hw");
  c.h = hw.data()[0];
  c.w = hw.data()[1];
  c.max_len = static_cast<int>(c.get("max_len").data()[0]);
  c.bos = static_cast<int32_t>(top.get_int("bos_token_id", 0, 1 << 24));
  c.eos = static_cast<int32_t>(top.get_int("eos_token_id", 0, 1 << 24));
  return true;
}

// Official prepare_text_features: tokens after the first EOS become 0.
std::vector<int32_t> clean_after_eos(std::vector<int32_t> t, int32_t eos) {
  bool seen = false;
  for (auto& x : t) {
    if (seen) x = 0;
    if (x == eos) seen = true;
  }
  return t;
}

std::vector<float> box_vec(const pipeline::Box& b) { return {b.x0, b.y0, b.x1, b.y1}; }

void check_box(const pipeline::Box& b, const core::Tensor& ref, const std::string& what) {
  std::vector<float> v = box_vec(b);
  double err = test::rel_l2(v.data(), ref.data(), 4);
  double maxabs = 0;
  for (int i = 0; i < 4; ++i) maxabs = std::max(maxabs, double(std::fabs(v[i] - ref.data()[i])));
  if (!(err <= kTol && maxabs <= 0.01))
    test::report(__FILE__, __LINE__, what + ": box rel L2 " + std::to_string(err) + " max abs " +
                                         std::to_string(maxabs) + " px");
}

// Rows [0, rows) of a (L, ...) reference against ours.
void check_rows(const float* ours, const core::Tensor& ref, int rows, const std::string& what) {
  const int64_t per = ref.numel() / ref.dim(0);
  double err = test::rel_l2(ours, ref.data(), rows * per);
  std::cout << "    " << what << " rel L2 " << err << "\n";
  if (!(err <= kTol)) test::report(__FILE__, __LINE__, what + ": rel L2 " + std::to_string(err));
}

}  // namespace

// Teacher-forced official pass (golden out_tf_*): logits, hidden states, corners and point logits, every position.
TEST(text_golden_teacher_forced) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    const int L = static_cast<int>(c.text.size()), V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    std::vector<float> logits(size_t(L) * V), hidden(size_t(L) * D), corners(size_t(L) * 4), plog(size_t(L) * 4);
    c.decoder->forward(c.visual.data(), c.n_visual, nullptr, 0, c.text.data(), L, logits.data(), hidden.data());
    c.points->predict(hidden.data(), L, c.w, c.h, corners.data(), plog.data());
    std::cout << "  " << name << "\n";
    check_rows(logits.data(), c.get("golden_tf_text_logits"), L, "tf logits");
    check_rows(hidden.data(), c.get("golden_tf_text_feats"), L, "tf hidden");
    check_rows(corners.data(), c.get("golden_tf_point_coords"), L, "tf corners");
    check_rows(plog.data(), c.get("golden_tf_point_logits"), L, "tf point logits");
  }
}

// Greedy captioning (golden out_cap_*): identical tokens, score, box; the streamed corners of the fed positions;
// and every position of the official point pass (full forward over the cleaned buffer).
TEST(text_golden_greedy) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    std::cout << "  " << name << "\n";
    pipeline::DecodeInput in = c.input(false);
    pipeline::DecodeOptions o = c.options();
    auto state = c.decoder->new_state(pipeline::decode_limits(in, o));
    std::atomic<bool> cancel{false};
    std::vector<pipeline::TokenEvent> streamed;
    pipeline::DecodeResult r = pipeline::greedy_decode(
        *c.decoder, *state, *c.points, in, o, [&](const pipeline::TokenEvent& e) { streamed.push_back(e); }, cancel);
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
    check_box(r.box, c.get("golden_cap_detection_boxes"), std::string(name) + " cap");
    check_rows(r.corners.data(), c.get("golden_cap_point_coords"), r.positions, "cap corners (streamed)");
    // Official point pass over the whole cleaned buffer (all max_len positions).
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
    pipeline::DecodeInput in = c.input(true);
    pipeline::DecodeOptions o = c.options();
    auto state = c.decoder->new_state(pipeline::decode_limits(in, o, static_cast<int>(c.text.size())));
    std::atomic<bool> cancel{false};
    int calls = 0;
    pipeline::DecodeResult r = pipeline::teacher_forced(*c.decoder, *state, *c.points, in, o, c.text,
                                                        [&](const pipeline::TokenEvent&) { ++calls; }, cancel);
    CHECK_EQ(calls, static_cast<int>(r.tokens.size()));
    check_box(r.box, c.get("golden_ref_detection_boxes"), std::string(name) + " ref");
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
    for (const Setup& s : setups) {
      const std::string tag = s.tag;
      pipeline::DecodeInput in = c.input(s.context);
      pipeline::DecodeOptions o = c.options(s.beams, s.per_node);
      auto state = c.decoder->new_state(pipeline::decode_limits(in, o));
      std::atomic<bool> cancel{false};
      pipeline::DecodeResult r = pipeline::generate(*c.decoder, *state, *c.points, in, o, nullptr, cancel);
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
      check_box(r.box, c.get("ref_" + tag + "_detection_boxes"), std::string(name) + " " + tag);
      check_rows(r.corners.data(), c.get("ref_" + tag + "_point_coords"), r.positions, tag + " corners");
    }
  }
}

// KV-cache steps equal the official full pass at every position where the official rows are causal (GIT: all;
// T5: up to the last valid target), the state is reusable, and the cancel flag aborts between steps.
TEST(text_incremental_and_cancel) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    const int L = static_cast<int>(c.text.size()), V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    model::TextDecoderLimits lim;
    lim.max_visual = c.n_visual;
    lim.max_context = static_cast<int>(c.context.size());
    lim.max_text = L;
    lim.max_sequences = 2;
    auto state = c.decoder->new_state(lim);
    std::vector<float> full_logits(size_t(L) * V), full_hidden(size_t(L) * D);
    c.decoder->forward(c.visual.data(), c.n_visual, c.context.data(), lim.max_context, c.text.data(), L,
                       full_logits.data(), full_hidden.data());
    int k = 1;
    while (k < L && c.text[k] != c.eos) ++k;
    for (int round = 0; round < 2; ++round) {  // the second round reuses the state after a new prefill
      c.decoder->prefill(*state, c.visual.data(), c.n_visual, c.context.data(), lim.max_context, 2);
      std::vector<float> lg(size_t(2) * V), hd(size_t(2) * D);
      double worst = 0;
      for (int p = 0; p < k; ++p) {
        int32_t toks[2] = {c.text[p], c.text[p]};
        c.decoder->step(*state, toks, lg.data(), hd.data());
        worst = std::max(worst, test::rel_l2(lg.data(), full_logits.data() + size_t(p) * V, V));
        worst = std::max(worst, test::rel_l2(hd.data() + D, full_hidden.data() + size_t(p) * D, D));
      }
      if (!(worst <= kTol)) test::report(__FILE__, __LINE__, std::string(name) + ": step vs forward " + std::to_string(worst));
      if (round == 0) std::cout << "  " << name << " step vs full pass (positions 0.." << k - 1 << ") " << worst << "\n";
    }
    int32_t tok[2] = {c.bos, c.bos};
    for (int p = k; p < L; ++p) c.decoder->step(*state, tok, nullptr, nullptr);  // fill the state to max_text
    CHECK_THROWS_CODE(c.decoder->step(*state, tok, nullptr, nullptr), LimitExceeded, "max_text");
    int32_t bad[2] = {-1, 5};
    c.decoder->prefill(*state, c.visual.data(), c.n_visual, nullptr, 0, 2);
    CHECK_THROWS_CODE(c.decoder->step(*state, bad, nullptr, nullptr), InvalidText, "vocabulary");

    pipeline::DecodeInput in = c.input(false);
    pipeline::DecodeOptions o = c.options();
    auto st = c.decoder->new_state(pipeline::decode_limits(in, o));
    std::atomic<bool> cancel{false};
    int seen = 0;
    CHECK_THROWS_CODE(pipeline::greedy_decode(*c.decoder, *st, *c.points, in, o,
                                              [&](const pipeline::TokenEvent&) {
                                                if (++seen == 2) cancel = true;
                                              },
                                              cancel),
                      Aborted, "cancel");
    CHECK_EQ(seen, 2);
    std::vector<int32_t> no_eos = {c.bos, 5, 6};
    CHECK_THROWS_CODE(pipeline::teacher_forced(*c.decoder, *st, *c.points, in, o, no_eos, nullptr, cancel),
                      InvalidText, "EOS");
  }
}

// t5x relative position buckets (values from pixelllm_ref.t5.relative_position_bucket, 32 buckets, distance 128).
TEST(text_t5_relative_buckets) {
  const int rel[] = {-200, -128, -127, -64, -33, -16, -15, -8, -7, -1, 0, 1, 7, 8, 15, 16, 33, 64, 127, 128, 200};
  const int bidir[] = {15, 15, 15, 14, 12, 10, 9, 8, 7, 1, 0, 17, 23, 24, 25, 26, 28, 30, 31, 31, 31};
  const int causal[] = {31, 31, 31, 26, 21, 16, 15, 8, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); ++i) {
    CHECK_EQ(model::T5::relative_bucket(rel[i], true, 32, 128), bidir[i]);
    CHECK_EQ(model::T5::relative_bucket(rel[i], false, 32, 128), causal[i]);
  }
}
