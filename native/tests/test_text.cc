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

// step_block (teacher forcing in one pass) == one step() per position, from a mid-sequence position, with two
// sequences fed different tokens; GIT runs it as one GEMM per projection over all rows (bit for bit the steps),
// T5 through the interface's default (a loop of steps). Too many tokens for max_text are refused (by GIT before
// any change; the default loop stops at the step that does not fit).
TEST(text_step_block_equals_steps) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    const int V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    model::TextDecoderLimits lim;
    lim.max_visual = c.n_visual;
    lim.max_context = static_cast<int>(c.context.size());
    lim.max_text = 12;
    lim.max_sequences = 2;
    auto block = c.decoder->new_state(lim), steps = c.decoder->new_state(lim);
    const int n = 9;
    std::vector<int32_t> toks(2 * n);
    for (int i = 0; i < 2 * n; ++i) toks[i] = (7 * i + 3) % V;
    int32_t first[2] = {c.bos, c.bos};
    for (auto* s : {block.get(), steps.get()}) {
      c.decoder->prefill(*s, c.visual.data(), c.n_visual, c.context.data(), lim.max_context, 2);
      c.decoder->step(*s, first, nullptr, nullptr);  // the block starts at position 1
    }
    std::vector<float> bl(size_t(2) * n * V), bh(size_t(2) * n * D);
    c.decoder->step_block(*block, toks.data(), n, bl.data(), bh.data());
    CHECK_EQ(block->position(), 1 + n);
    double worst = 0;
    for (int p = 0; p < n; ++p) {
      std::vector<float> lg(size_t(2) * V), hd(size_t(2) * D);
      int32_t col[2] = {toks[p], toks[n + p]};
      c.decoder->step(*steps, col, lg.data(), hd.data());
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < V; ++j)
          worst = std::max(worst, std::fabs(double(lg[size_t(r) * V + j]) - bl[(size_t(r) * n + p) * V + j]));
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < D; ++j)
          worst = std::max(worst, std::fabs(double(hd[size_t(r) * D + j]) - bh[(size_t(r) * n + p) * D + j]));
    }
    std::cout << "  " << name << " step_block vs steps: max abs diff " << worst << "\n";
    CHECK(worst <= 1e-5);
    if (std::string(c.decoder->name()) == "git_decoder") CHECK_EQ(worst, 0.0);
    // The next token continues from the block's position like from the steps'.
    std::vector<float> a(size_t(2) * V), b(size_t(2) * V);
    c.decoder->step(*block, first, a.data(), nullptr);
    c.decoder->step(*steps, first, b.data(), nullptr);
    CHECK(test::rel_l2(a.data(), b.data(), a.size()) <= 1e-6);
    CHECK_THROWS_CODE(c.decoder->step_block(*block, toks.data(), 2, nullptr, nullptr), LimitExceeded, "max_text");
    if (std::string(c.decoder->name()) == "git_decoder") CHECK_EQ(block->position(), 2 + n);  // checked first
  }
}

// GIT: trailing context padding (id 0: masked as a key, rows never read) left out of the prefix gives the results
// of the context without it (the mask path pads the context to the official row length).
TEST(text_git_trailing_context_padding) {
  for (const char* name : kCases) {
    TextCase c;
    if (!load_case(name, c)) continue;
    if (std::string(c.decoder->name()) != "git_decoder") continue;
    std::vector<int32_t> ctx(c.context);
    while (!ctx.empty() && ctx.back() == 0) ctx.pop_back();
    if (ctx.empty()) continue;
    std::vector<int32_t> padded(ctx);
    padded.resize(ctx.size() + 23, 0);
    const int L = static_cast<int>(c.text.size()), V = c.decoder->vocab_size(), D = c.decoder->hidden_size();
    std::vector<float> l1(size_t(L) * V), h1(size_t(L) * D), l2(l1.size()), h2(h1.size());
    c.decoder->forward(c.visual.data(), c.n_visual, ctx.data(), int(ctx.size()), c.text.data(), L, l1.data(), h1.data());
    c.decoder->forward(c.visual.data(), c.n_visual, padded.data(), int(padded.size()), c.text.data(), L, l2.data(),
                       h2.data());
    const double e = std::max(test::rel_l2(l2.data(), l1.data(), l1.size()), test::rel_l2(h2.data(), h1.data(), h1.size()));
    std::cout << "  " << name << " padded vs unpadded context: rel L2 " << e << "\n";
    CHECK(e <= 1e-6);
  }
}
