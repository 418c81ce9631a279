// Dense captioning through the native pipeline (Pipeline::dense over the CPU backend) against the reference
// proposal_head.dense_caption on the same weights and 8-bit image (build/fixtures/proposal/<case>/:
// model dir + image.rgb + expected.json from engines/reference/scripts/fixtures_proposal.py). Boxes within
// 0.01 px, proposal and caption scores rel 1e-4, caption tokens and order identical. Skips without fixtures.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "pipeline/pipeline.h"
#include "tests/test.h"

namespace fs = std::filesystem;
using namespace pixelllm;

namespace {

fs::path proposal_root() {
  if (const char* env = std::getenv("PIXELLLM_PROPOSAL_FIXTURES")) return env;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "build" / "fixtures" / "proposal")) return p / "build" / "fixtures" / "proposal";
    if (p == p.parent_path()) break;
  }
  return {};
}

void check_dense(const std::string& name) {
  const fs::path dir = proposal_root() / name;
  if (proposal_root().empty() || !fs::exists(dir / "expected.json")) {
    std::cout << "  SKIP " << name << ": no fixtures (run engines/reference/scripts/fixtures_proposal.py)\n";
    return;
  }
  const core::Json exp = core::parse_json_file((dir / "expected.json").string());
  std::ifstream f(dir / "image.rgb", std::ios::binary);
  const std::vector<uint8_t> rgb((std::istreambuf_iterator<char>(f)), {});
  pipeline::Image img;
  img.width = exp["width"].get<int>();
  img.height = exp["height"].get<int>();
  img.rgb = rgb.data();
  CHECK_EQ(rgb.size(), size_t(img.width) * img.height * 3);
  pipeline::LoadOptions lo;
  lo.backend = "cpu";
  lo.threads = 2;
  auto p = pipeline::Pipeline::load(dir.string(), lo);
  CHECK(p->info().has_proposal_head);
  auto feats = p->encode(img);
  std::atomic<bool> cancel{false};
  for (const auto& run : exp["runs"]) {
    pipeline::DenseOptions o;
    o.context_tokens = exp["context_tokens"].get<std::vector<int32_t>>();
    const auto& opt = run["options"];
    if (opt.contains("maxBoxes")) o.max_boxes = opt["maxBoxes"].get<int>();
    if (opt.contains("scoreThreshold")) o.score_threshold = opt["scoreThreshold"].get<float>();
    if (opt.contains("nmsIou")) o.nms_iou = opt["nmsIou"].get<float>();
    if (opt.contains("maxTokens")) o.max_tokens = opt["maxTokens"].get<int>();
    const auto got = p->dense(*feats, o, cancel);
    const auto& items = run["items"];
    CHECK_EQ(got.size(), items.size());
    if (got.size() != items.size()) continue;
    double worst_box = 0, worst_score = 0, worst_cap = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& e = items[i];
      const std::vector<float> box = e["box"].get<std::vector<float>>();
      const float b[4] = {got[i].box.x0, got[i].box.y0, got[i].box.x1, got[i].box.y1};
      for (int k = 0; k < 4; ++k) worst_box = std::max(worst_box, double(std::fabs(b[k] - box[k])));
      const double s = e["score"].get<double>(), cs = e["caption_score"].get<double>();
      worst_score = std::max(worst_score, std::fabs(got[i].score - s) / std::max(std::fabs(s), 1e-6));
      worst_cap = std::max(worst_cap, std::fabs(got[i].caption_score - cs) / std::max(std::fabs(cs), 1e-6));
      CHECK((got[i].tokens == e["tokens"].get<std::vector<int32_t>>()));
    }
    std::cout << "    " << name << " dense " << opt.dump() << ": " << got.size() << " items, worst box "
              << worst_box << " px, score rel " << worst_score << ", caption score rel " << worst_cap << "\n";
    CHECK(worst_box <= 0.01);
    CHECK(worst_score <= 1e-4);
    CHECK(worst_cap <= 1e-4);
  }
  // Errors: bad options, out-of-vocabulary context, cancel.
  pipeline::DenseOptions bad;
  bad.max_tokens = p->info().max_caption_length + 1;
  CHECK_THROWS_CODE(p->dense(*feats, bad, cancel), LimitExceeded, "max_tokens");
  bad = {};
  bad.context_tokens = {p->info().vocab_size};
  CHECK_THROWS_CODE(p->dense(*feats, bad, cancel), InvalidText, "vocabulary");
  std::atomic<bool> stop{true};
  CHECK_THROWS_CODE(p->dense(*feats, {}, stop), Aborted, "cancel");
}

}  // namespace

TEST(proposal_dense_demo_random) { check_dense("demo_random"); }
TEST(proposal_dense_demo_ckpt) { check_dense("demo_ckpt"); }
