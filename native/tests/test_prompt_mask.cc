// Prompt and mask side (prompt_encoder, prompt_adapter, mask_adapter, mask_decoder, shared two_way_transformer)
// against the reference fixtures and the official golden outputs
// (engines/reference/scripts/fixtures_prompt_mask.py writes build/fixtures/golden/<case>/: config.json +
// model.safetensors + prompt_mask.safetensors). Skips with a message when the fixtures are absent.
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/thread_pool.h"
#include "model/mask_adapter.h"
#include "model/mask_decoder.h"
#include "model/prompt_adapter.h"
#include "model/prompt_encoder.h"
#include "tests/fixture_util.h"
#include "tests/test.h"

using namespace pixelllm;

namespace {

const auto& kCases = test::kGoldenCases;
constexpr double kTol = 1e-4;

using Case = test::Fixture;

bool load_case(const std::string& name, Case& c) {
  return test::load_fixture({"PIXELLLM_FIXTURES", "golden", "prompt_mask",
                             "engines/reference/scripts/fixtures_prompt_mask.py"},
                            name, c);
}

struct Models {
  std::unique_ptr<model::PromptEncoder> pe;
  std::unique_ptr<model::PromptAdapter> pa;
  std::unique_ptr<model::MaskAdapter> ma;
  std::unique_ptr<model::MaskDecoder> md;
  explicit Models(const Case& c)
      : pe(std::make_unique<model::PromptEncoder>(c.config, *c.weights)),
        pa(std::make_unique<model::PromptAdapter>(c.config, *c.weights)),
        ma(std::make_unique<model::MaskAdapter>(c.config, *c.weights)),
        md(std::make_unique<model::MaskDecoder>(c.config, *c.weights)) {}
};

std::vector<float> visual_tokens(const Case& c, const Models& m, core::ThreadPool* pool) {
  core::Tensor f = c.data->get("fused_features"), boxes = c.data->get("prompt_boxes");
  const int64_t P = boxes.dim(0);
  std::vector<float> out(size_t(P * m.pa->tokens_per_prompt(f.dim(0), f.dim(1)) * m.pa->token_dim()));
  m.pa->visual_tokens(*m.pe, f.data(), f.dim(0), f.dim(1), boxes.data(), P, out.data(), pool);
  return out;
}

struct MaskOut {
  std::vector<float> box_sparse, adapted, masks, iou;
};

// pixel_llm.py forward_mask_decode for one tag (cap | ref) of the fixture.
MaskOut mask_decode(const Case& c, const Models& m, const std::string& tag, core::ThreadPool* pool) {
  core::Tensor sam = c.data->get("sam_features"), boxes = c.data->get(tag + "_boxes");
  core::Tensor text = c.data->get(tag + "_text"), visual = c.data->get(tag + "_visual");
  const int64_t P = boxes.dim(0), h = sam.dim(0), w = sam.dim(1), E = m.pe->embed_dim();
  MaskOut o;
  o.box_sparse.resize(size_t(P * 2 * E));
  for (int64_t p = 0; p < P; ++p) m.pe->embed_box(boxes.data() + 4 * p, o.box_sparse.data() + p * 2 * E);
  o.adapted.resize(o.box_sparse.size());
  m.ma->forward(o.box_sparse.data(), P, visual.data(), visual.dim(1), text.data(), text.dim(1), o.adapted.data(),
                pool);
  std::vector<float> pe(size_t(h * w * E));
  m.pe->dense_pe(h, w, pe.data());
  const int64_t M = m.md->num_output_masks();
  o.masks.resize(size_t(P * M * 16 * h * w));
  o.iou.resize(size_t(P * M));
  m.md->forward(sam.data(), h, w, pe.data(), o.adapted.data(), P, 2, m.pe->no_mask_embed(), o.masks.data(),
                o.iou.data(), pool);
  return o;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(prompt_golden_visual_tokens) {
  for (const char* name : kCases) {
    Case c;
    if (!load_case(name, c)) return;
    Models m(c);
    core::Tensor f = c.data->get("fused_features"), boxes = c.data->get("prompt_boxes");
    const int64_t P = boxes.dim(0), E = m.pe->embed_dim();
    std::vector<float> sparse(size_t(P * m.pe->adapter_tokens() * E)), pe(size_t(f.dim(0) * f.dim(1) * E));
    std::vector<float> pe_sam(size_t(24 * 24 * E));
    m.pe->sparse_for_adapter(boxes.data(), P, sparse.data());
    m.pe->dense_pe(f.dim(0), f.dim(1), pe.data());
    m.pe->dense_pe(24, 24, pe_sam.data());
    test::check_against(c, sparse, "ref_sparse", 1e-6);
    test::check_against(c, pe, "ref_dense_pe", 1e-6);
    test::check_against(c, pe_sam, "ref_dense_pe_sam", 1e-6);
    std::vector<float> tokens = visual_tokens(c, m, nullptr);
    test::check_against(c, tokens, "ref_visual_tokens", kTol);
    test::check_against(c, tokens, "golden_visual_tokens", kTol);
  }
}

TEST(mask_golden_cap_and_ref) {
  for (const char* name : kCases) {
    Case c;
    if (!load_case(name, c)) return;
    Models m(c);
    for (const std::string tag : {"cap", "ref"}) {
      MaskOut o = mask_decode(c, m, tag, nullptr);
      test::check_against(c, o.box_sparse, "ref_" + tag + "_box_sparse", 1e-6);
      test::check_against(c, o.adapted, "ref_" + tag + "_adapted", kTol);
      test::check_against(c, o.masks, "ref_" + tag + "_masks", kTol);
      test::check_against(c, o.iou, "ref_" + tag + "_iou", kTol);
      test::check_against(c, o.masks, "golden_" + tag + "_masks", kTol);
      test::check_against(c, o.iou, "golden_" + tag + "_iou", kTol);
    }
  }
}

TEST(prompt_several_prompts_and_point_fallback) {
  Case c;
  if (!load_case("t5_s1_h300", c)) return;
  Models m(c);
  core::Tensor f = c.data->get("fused_features"), golden_box = c.data->get("prompt_boxes");
  const int64_t per = m.pa->tokens_per_prompt(f.dim(0), f.dim(1)) * m.pa->token_dim();
  // prompts: [golden box, an all-zero box (point fallback), a small box]
  std::vector<float> boxes = {golden_box.data()[0], golden_box.data()[1], golden_box.data()[2], golden_box.data()[3],
                              0, 0, 0, 0, 10, 20, 200, 100};
  std::vector<float> all(size_t(3 * per));
  m.pa->visual_tokens(*m.pe, f.data(), f.dim(0), f.dim(1), boxes.data(), 3, all.data());
  for (int p = 0; p < 3; ++p) {  // each prompt alone gives the same tokens
    std::vector<float> one(static_cast<size_t>(per));
    m.pa->visual_tokens(*m.pe, f.data(), f.dim(0), f.dim(1), boxes.data() + 4 * p, 1, one.data());
    CHECK_REL_L2(all.data() + p * per, one.data(), per, 1e-6);
  }
  std::vector<float> golden(all.begin(), all.begin() + per);
  test::check_against(c, golden, "golden_visual_tokens", kTol);
  // Point fallback: the zero box gives the 2x2 grid points (all at pixel 0 -> +0.5 shift) + 1 padding point.
  const int64_t E = m.pe->embed_dim(), T = m.pe->adapter_tokens();
  CHECK_EQ(T, int64_t(5));
  std::vector<float> sparse(size_t(2 * T * E)), box2(size_t(2 * E));
  m.pe->sparse_for_adapter(boxes.data() + 4, 2, sparse.data());
  m.pe->embed_box(boxes.data() + 8, box2.data());
  for (int64_t t = 1; t < 4; ++t) CHECK_REL_L2(sparse.data() + t * E, sparse.data(), E, 0.0);
  CHECK_REL_L2(sparse.data() + (T + 0) * E, box2.data(), 2 * E, 0.0);  // valid box: corner tokens first
  CHECK_REL_L2(sparse.data() + (T + 2) * E, m.pe->no_mask_embed(), E, 0.0);
}

TEST(prompt_mask_threads_and_concurrency) {
  Case c;
  if (!load_case("bert_s1_h300", c)) return;
  Models m(c);
  core::ThreadPool pool(0);
  std::vector<float> serial = visual_tokens(c, m, nullptr);
  std::vector<float> threaded = visual_tokens(c, m, &pool);
  CHECK_REL_L2(threaded.data(), serial.data(), int64_t(serial.size()), 1e-6);
  MaskOut ms = mask_decode(c, m, "ref", nullptr);
  MaskOut mt = mask_decode(c, m, "ref", &pool);
  CHECK_REL_L2(mt.masks.data(), ms.masks.data(), int64_t(ms.masks.size()), 1e-6);
  // Concurrent requests on shared (const) components give identical results.
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2; ++i) {
        if (t == 0) {
          if (visual_tokens(c, m, nullptr) != serial) ++bad;
        } else if (mask_decode(c, m, "ref", nullptr).masks != ms.masks) {
          ++bad;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK_EQ(bad.load(), 0);

  double best_vt = 1e30, best_md = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    visual_tokens(c, m, &pool);
    best_vt = std::min(best_vt, ms_since(t0));
    t0 = std::chrono::steady_clock::now();
    mask_decode(c, m, "ref", &pool);
    best_md = std::min(best_md, ms_since(t0));
  }
  std::cout << "    tiny config, " << pool.size() << " threads: visual tokens (prompt encoder+adapter) " << best_vt
            << " ms, mask (box embed+adapter+decoder) " << best_md << " ms per prompt (best of 3)\n";
}

TEST(prompt_mask_load_errors) {
  Case c;
  if (!load_case("t5_s0_h384", c)) return;
  auto with = [&](const char* section, const char* key, core::Json value) {
    core::Json cfg = c.config;
    cfg[section][key] = value;
    return cfg;
  };
  CHECK_THROWS_CODE(model::PromptAdapter(with("prompt_adapter", "transformer_dim", 32), *c.weights), ConfigMismatch,
                    "output_tokens");
  CHECK_THROWS_CODE(model::PromptAdapter(with("prompt_adapter", "visual_projection_dim", nullptr), *c.weights),
                    ConfigMismatch, "visual_projection");
  CHECK_THROWS_CODE(model::PromptAdapter(with("prompt_adapter", "depth", 2), *c.weights), ModelFormat, "layers.1");
  CHECK_THROWS_CODE(model::PromptAdapter(with("prompt_adapter", "prompt_fuse_fn", "mean"), *c.weights),
                    ConfigMismatch, "prompt_fuse_fn");
  CHECK_THROWS_CODE(model::PromptAdapter(with("prompt_adapter", "num_heads", 5), *c.weights), ConfigMismatch,
                    "heads");
  CHECK_THROWS_CODE(model::MaskAdapter(with("mask_adapter", "text_dim", 48), *c.weights), ConfigMismatch,
                    "textual_projection_mlp");
  CHECK_THROWS_CODE(model::MaskDecoder(with("mask_decoder", "depth", 1), *c.weights), ConfigMismatch,
                    "more than the configured 1 layers");
  CHECK_THROWS_CODE(model::MaskDecoder(with("mask_decoder", "num_multimask_outputs", 2), *c.weights),
                    ConfigMismatch, "mask_tokens");
  CHECK_THROWS_CODE(model::PromptEncoder(with("prompt_encoder", "embed_dim", 128), *c.weights), ConfigMismatch,
                    "positional_embedding");
  CHECK_THROWS_CODE(model::PromptEncoder(with("prompt_encoder", "embed_dim", "x"), *c.weights), ModelFormat,
                    "embed_dim");
  {
    core::Json cfg = c.config;
    cfg.erase("mask_adapter");
    CHECK_THROWS_CODE(model::MaskAdapter(cfg, *c.weights), ModelFormat, "mask_adapter");
  }
  // forward-time argument checks
  Models m(c);
  std::vector<float> buf(16);
  CHECK_THROWS_CODE(m.ma->forward(buf.data(), 1, buf.data(), 0, buf.data(), 0, buf.data()), InvalidArgument,
                    "at least one");
  CHECK_THROWS_CODE(m.pe->dense_pe(0, 3, buf.data()), InvalidArgument, "grid");
}

TEST(prompt_mask_paths_beyond_golden) {
  for (const char* name : kCases) {
    Case c;
    if (!load_case(name, c)) return;
    Models m(c);
    core::Tensor f = c.data->get("fused_features"), extra = c.data->get("extra_boxes");
    const int64_t P = extra.dim(0), h = f.dim(0), w = f.dim(1), E = m.pe->embed_dim();
    // several prompts, one of them the all-zero box (point-grid fallback)
    std::vector<float> sparse(size_t(P * m.pe->adapter_tokens() * E));
    m.pe->sparse_for_adapter(extra.data(), P, sparse.data());
    test::check_against(c, sparse, "ref_extra_sparse", 1e-6);
    std::vector<float> tokens(size_t(P * m.pa->tokens_per_prompt(h, w) * m.pa->token_dim()));
    m.pa->visual_tokens(*m.pe, f.data(), h, w, extra.data(), P, tokens.data());
    test::check_against(c, tokens, "ref_extra_visual_tokens", kTol);
    {  // prompt_fuse_fn "dense": every image key becomes a visual token
      core::Json cfg = c.config;
      cfg["prompt_adapter"]["prompt_fuse_fn"] = "dense";
      model::PromptAdapter dense(cfg, *c.weights);
      core::Tensor boxes = c.data->get("prompt_boxes");
      CHECK_EQ(dense.tokens_per_prompt(h, w), h * w);
      std::vector<float> out(size_t(boxes.dim(0) * h * w * dense.token_dim()));
      dense.visual_tokens(*m.pe, f.data(), h, w, boxes.data(), boxes.dim(0), out.data());
      test::check_against(c, out, "ref_dense_fuse_tokens", kTol);
    }
    {  // multimask_output: mask tokens 1..3
      core::Json cfg = c.config;
      cfg["mask_decoder"]["multimask_output"] = true;
      Models mm(c);
      mm.md = std::make_unique<model::MaskDecoder>(cfg, *c.weights);
      CHECK_EQ(mm.md->num_output_masks(), 3);
      MaskOut o = mask_decode(c, mm, "cap", nullptr);
      test::check_against(c, o.masks, "ref_cap_multi_masks", kTol);
      test::check_against(c, o.iou, "ref_cap_multi_iou", kTol);
    }
  }
}
