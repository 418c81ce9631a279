// Text side, model level (git_decoder | t5, point_head): the official teacher-forced pass against the golden
// outputs, KV-cache steps against the full pass, T5 relative buckets. Decoding (greedy / beam / refer) is in
// test_text_decoding.cc. Fixtures: see test_text_fixture.h (skips with a message when absent).
#include <string>
#include <vector>

#include "tests/test_text_fixture.h"

using namespace pixelllm;
using namespace pixelllm::test::text;

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

// bfloat16 decoder weights (LoadOptions.decoderWeights 'bf16'): the teacher-forced pass stays within 2 % (rel L2)
// of the golden logits and hidden states, and its KV-cache steps equal its own full pass like float32's do.
TEST(text_bf16_decoder_weights_near_golden) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c, cpu::WeightFormat::bf16)) continue;
    const int L = static_cast<int>(c.text.size()), V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    std::vector<float> logits(size_t(L) * V), hidden(size_t(L) * D);
    c.decoder->forward(c.visual.data(), c.n_visual, nullptr, 0, c.text.data(), L, logits.data(), hidden.data());
    const core::Tensor gl = c.get("golden_tf_text_logits"), gh = c.get("golden_tf_text_feats");
    const double el = test::rel_l2(logits.data(), gl.data(), size_t(L) * V);
    const double eh = test::rel_l2(hidden.data(), gh.data(), size_t(L) * D);
    std::cout << "  " << name << " bf16 weights vs golden: logits " << el << ", hidden " << eh << "\n";
    CHECK(el <= 2e-2 && eh <= 2e-2);
    CHECK(el > 1e-6);  // the weights really were rounded
    model::TextDecoderLimits lim;
    lim.max_visual = c.n_visual;
    lim.max_text = L;
    auto state = c.decoder->new_state(lim);
    c.decoder->prefill(*state, c.visual.data(), c.n_visual, nullptr, 0, 1);
    std::vector<float> lg(V);
    double worst = 0;
    int k = 1;  // up to the first EOS (T5's official rows are causal only there; see text_incremental)
    while (k < L && c.text[k] != c.eos) ++k;
    for (int p = 0; p < k; ++p) {
      c.decoder->step(*state, &c.text[p], lg.data(), nullptr);
      worst = std::max(worst, test::rel_l2(lg.data(), logits.data() + size_t(p) * V, V));
    }
    CHECK(worst <= kTol);
  }
}

// KV-cache steps equal the official full pass at every position where the official rows are causal (GIT: all;
// T5: up to the last valid target); the state is reusable; limits and bad ids are refused.
TEST(text_incremental) {
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
