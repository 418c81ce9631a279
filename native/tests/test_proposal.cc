// Proposal head (model/proposal_head.h) and its post-processing (pipeline/nms.h) against the reference
// (engines/reference/scripts/fixtures_proposal.py writes build/fixtures/proposal/<case>/: config.json +
// model.safetensors + proposal.safetensors). The fixture cases skip with a message when absent; the NMS unit
// tests always run.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/thread_pool.h"
#include "model/proposal_head.h"
#include "pipeline/nms.h"
#include "tests/fixture_util.h"
#include "tests/test.h"

using namespace pixelllm;

namespace {

constexpr double kTol = 1e-4;

using Case = test::Fixture;

bool load_case(const std::string& name, Case& c) {
  return test::load_fixture({"PIXELLLM_PROPOSAL_FIXTURES", "proposal", "proposal",
                             "engines/reference/scripts/fixtures_proposal.py"},
                            name, c);
}

void check_case(const std::string& name) {
  Case c;
  if (!load_case(name, c)) return;
  const core::JsonReader section = core::JsonReader(c.config, "config.json").object("proposal_head");
  auto head = model::ProposalHead::load(section, *c.weights);
  const auto& cfg = head->config();
  const int G = cfg.grid_size;
  const core::Tensor feats = c.data->get("features"), want_hm = c.data->get("heatmap"),
                     want_reg = c.data->get("box_regs");
  const int n = static_cast<int>(feats.dim(0));
  CHECK_EQ(feats.numel(), int64_t(n) * G * G * cfg.input_dim);
  core::ThreadPool pool(2);
  std::vector<float> hm(static_cast<size_t>(n) * G * G), reg(hm.size() * 4);
  for (int b = 0; b < n; ++b)
    head->forward(feats.data() + static_cast<size_t>(b) * G * G * cfg.input_dim, G, G, hm.data() + b * G * G,
                  reg.data() + b * G * G * 4, &pool);
  std::cout << "    " << name << " heatmap rel_l2 " << test::rel_l2(hm.data(), want_hm.data(), want_hm.numel())
            << ", box_regs rel_l2 " << test::rel_l2(reg.data(), want_reg.data(), want_reg.numel()) << "\n";
  CHECK_REL_L2(hm.data(), want_hm.data(), want_hm.numel(), kTol);
  CHECK_REL_L2(reg.data(), want_reg.data(), want_reg.numel(), kTol);

  // Post-processing from the REFERENCE maps (kept cells must be identical), then from ours (end to end).
  for (int j = 0; c.data->has("post" + std::to_string(j) + "_params"); ++j) {
    const std::string p = "post" + std::to_string(j) + "_";
    const core::Tensor prm = c.data->get(p + "params"), wb = c.data->get(p + "boxes"), ws = c.data->get(p + "scores"),
                       wc = c.data->get(p + "cells");
    const float* v = prm.data();
    const int fi = static_cast<int>(v[0]);
    pipeline::ProposalParams pp;
    pp.stride = static_cast<int>(v[3]);
    pp.pre_nms_topk = static_cast<int>(v[4]);
    pp.score_threshold = v[5];
    pp.iou_threshold = v[6];
    pp.max_detections = static_cast<int>(v[7]);
    const size_t off = static_cast<size_t>(fi) * G * G;
    for (int src = 0; src < 2; ++src) {
      const float* h = (src == 0 ? want_hm.data() : hm.data()) + off;
      const float* r = (src == 0 ? want_reg.data() : reg.data()) + off * 4;
      const auto got = pipeline::decode_proposals(h, r, G, G, v[1], v[2], pp);
      const int64_t k = wc.numel();
      CHECK_EQ(int64_t(got.size()), k);
      if (int64_t(got.size()) != k) continue;
      std::vector<float> boxes, scores;
      bool same_cells = true;
      for (int64_t i = 0; i < k; ++i) {
        same_cells = same_cells && got[i].cell == static_cast<int>(wc.data()[i]);
        boxes.insert(boxes.end(), {got[i].box.x0, got[i].box.y0, got[i].box.x1, got[i].box.y1});
        scores.push_back(got[i].score);
      }
      CHECK(same_cells);
      if (k > 0) {
        CHECK_REL_L2(boxes.data(), wb.data(), k * 4, kTol);
        CHECK_REL_L2(scores.data(), ws.data(), k, kTol);
        double worst = 0;
        for (int64_t i = 0; i < 4 * k; ++i) worst = std::max(worst, double(std::fabs(boxes[i] - wb.data()[i])));
        CHECK(worst <= 0.01);
      }
      if (src == 1) std::cout << "    " << name << " post" << j << ": " << k << " boxes, cells identical\n";
    }
  }
}

}  // namespace

TEST(proposal_head_demo_random) { check_case("demo_random"); }
TEST(proposal_head_demo_ckpt) { check_case("demo_ckpt"); }

TEST(proposal_nms_rules) {
  using pipeline::Box;
  // IoU with the official epsilon; identical boxes suppress (>= threshold); order = input order.
  CHECK_NEAR(pipeline::box_iou({0, 0, 10, 10}, {5, 0, 15, 10}), 50.0 / 150.0, 1e-6);
  CHECK_NEAR(pipeline::box_iou({0, 0, 0, 0}, {0, 0, 0, 0}), 0.0, 0.0);
  const std::vector<Box> boxes = {{0, 0, 10, 10}, {0, 0, 10, 10}, {5, 0, 15, 10}, {20, 20, 30, 30}};
  CHECK((pipeline::nms(boxes, 0.5f, 10) == std::vector<int>{0, 2, 3}));
  CHECK((pipeline::nms(boxes, 1.0f, 10) == std::vector<int>{0, 2, 3}));       // IoU 1 - eps < 1 is not >= 1
  CHECK((pipeline::nms(boxes, 1.0f / 3.0f - 1e-4f, 10) == std::vector<int>{0, 3}));
  CHECK((pipeline::nms(boxes, 0.5f, 2) == std::vector<int>{0, 2}));
  CHECK(pipeline::nms({}, 0.5f, 3).empty());
}

TEST(proposal_decode_ties_and_clipping) {
  // 2x2 grid, stride 10: equal scores keep the lower cell first; boxes clipped to the valid image.
  const float hm[4] = {0.f, 2.f, 0.f, -10.f};
  const float reg[16] = {1, 1, 1, 1, 0.5f, 0.5f, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1};
  pipeline::ProposalParams p;
  p.stride = 10;
  p.iou_threshold = 0.99f;
  const auto got = pipeline::decode_proposals(hm, reg, 2, 2, 18.f, 20.f, p);
  CHECK_EQ(got.size(), size_t(3));   // cell 3 scores sigmoid(-10) < 0.05
  if (got.size() == 3) {
    CHECK_EQ(got[0].cell, 1);
    CHECK_EQ(got[1].cell, 0);
    CHECK_EQ(got[2].cell, 2);
    CHECK_NEAR(got[0].box.x0, 10.f, 1e-6);   // gx = 15: 15 - 5
    CHECK_NEAR(got[0].box.x1, 20.f, 1e-6);   // 15 + 90 clipped to 20
    CHECK_NEAR(got[0].box.y1, 18.f, 1e-6);   // clipped to valid_h
    CHECK_NEAR(got[1].box.x0, 0.f, 1e-6);    // 5 - 10 clipped to 0
  }
  pipeline::ProposalParams bad = p;
  bad.stride = 0;
  CHECK_THROWS_CODE(pipeline::decode_proposals(hm, reg, 2, 2, 18.f, 20.f, bad), InvalidArgument, "stride");
}
