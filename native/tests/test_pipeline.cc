// The whole native pipeline (pipeline.h over the CPU backend) on the golden model directories that
// engines/reference/scripts/make_golden_models.py writes into build/golden/<case>/ (config.json,
// model.safetensors, tokenizer.json, image.rgb, expected.json = the reference model on the same 8-bit image).
// Checks, per case: greedy caption tokens identical, score, per-word log-probs and corners, box (<= 0.01 px),
// low-res mask logits and IoU (rel L2 <= 1e-4), the final binary mask, the same for the referring path; streaming
// events == result; cancel -> ABORTED with the pipeline still usable; dense -> BACKEND_UNAVAILABLE. Plus the
// official resize geometry (data.py resized_hw) and the preprocessing of a non-identity resize.
// Skips with a message when build/golden is absent.
#include <algorithm>
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
#include "pipeline/image.h"
#include "pipeline/pipeline.h"
#include "pipeline/tasks.h"
#include "tests/test.h"

namespace fs = std::filesystem;
using namespace pixelllm;

namespace {

const char* const kCases[] = {"bert_s0_h384", "bert_s1_h300", "t5_s0_h384", "t5_s1_h300"};
constexpr double kTol = 1e-4;

fs::path golden_root() {
  if (const char* env = std::getenv("PIXELLLM_GOLDEN_MODELS")) return env;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "build" / "golden")) return p / "build" / "golden";
    if (p == p.parent_path()) break;
  }
  return {};
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<uint8_t> base64_decode(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::vector<uint8_t> out;
  int bits = 0;
  uint32_t acc = 0;
  for (char c : s) {
    const int v = val(c);
    if (v < 0) continue;
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xffffffu;  // at most 14 live bits
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  return out;
}

template <class T>
std::vector<T> vec(const core::Json& j) {
  return j.get<std::vector<T>>();
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 1e9;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
}

void check_rel(const std::vector<float>& ours, const std::vector<float>& ref, const std::string& what) {
  const double e = rel_l2(ours, ref);
  std::cout << "    " << what << " rel L2 " << e << "\n";
  if (!(e <= kTol)) test::report(__FILE__, __LINE__, what + ": rel L2 " + std::to_string(e));
}

struct Case {
  std::string name;
  fs::path dir;
  core::Json exp;
  std::vector<uint8_t> rgb;
  int width = 0, height = 0;
};

bool load(const char* name, Case& c) {
  const fs::path root = golden_root();
  c.dir = root / name;
  if (root.empty() || !fs::exists(c.dir / "expected.json")) {
    std::cout << "  SKIP " << name << ": no golden model dir (run engines/reference/scripts/make_golden_models.py)\n";
    return false;
  }
  c.name = name;
  c.exp = core::parse_json_file((c.dir / "expected.json").string());
  c.width = c.exp["width"].get<int>();
  c.height = c.exp["height"].get<int>();
  c.rgb = read_bytes(c.dir / "image.rgb");
  return c.rgb.size() == size_t(c.width) * c.height * 3;
}

std::shared_ptr<pipeline::Pipeline> load_pipeline(const Case& c) {
  pipeline::LoadOptions o;
  o.backend = "cpu";
  o.threads = 2;
  return pipeline::Pipeline::load(c.dir.string(), o);
}

// One task's result against expected.json's section.
void check_task(const Case& c, const core::Json& e, const pipeline::GenerateResult& r, const pipeline::TaskTrace& t,
                const std::string& what) {
  CHECK(r.tokens == vec<int32_t>(e["tokens"]));
  CHECK_NEAR(r.score, e["score"].get<double>(), kTol * std::fabs(e["score"].get<double>()) + 1e-6);
  std::vector<float> lp, corners;
  for (const auto& ev : r.events) {
    lp.push_back(ev.logprob);
    corners.insert(corners.end(), {ev.corners.x0, ev.corners.y0, ev.corners.x1, ev.corners.y1});
  }
  check_rel(lp, vec<float>(e["logprobs"]), what + " per-word log-probs");
  std::vector<float> ref_corners;
  for (const auto& row : e["corners"])
    for (const auto& v : row) ref_corners.push_back(v.get<float>());
  check_rel(corners, ref_corners, what + " per-word corners");
  const std::vector<float> box = vec<float>(e["box"]);
  CHECK(r.box.has_value());
  if (r.box) {
    const float ours[4] = {r.box->x0, r.box->y0, r.box->x1, r.box->y1};
    double worst = 0;
    for (int i = 0; i < 4; ++i) worst = std::max(worst, double(std::fabs(ours[i] - box[i])));
    std::cout << "    " << what << " box max abs error " << worst << " px\n";
    if (!(worst <= 0.01)) test::report(__FILE__, __LINE__, what + ": box off by " + std::to_string(worst) + " px");
  }
  CHECK(t.mask_tokens == vec<int32_t>(e["mask_tokens"]));
  check_rel(t.mask_logits, vec<float>(e["mask_logits"]), what + " low-res mask logits");
  CHECK_NEAR(t.iou, e["iou"].get<double>(), kTol * std::fabs(e["iou"].get<double>()) + 1e-6);
  CHECK(r.mask.has_value());
  if (r.mask) {
    const std::vector<uint8_t> ref = base64_decode(e["mask_b64"].get<std::string>());
    CHECK_EQ(r.mask->width, c.width);
    CHECK_EQ(r.mask->height, c.height);
    size_t diff = 0;
    for (size_t i = 0; i < ref.size() && i < r.mask->mask.size(); ++i) diff += ref[i] != r.mask->mask[i];
    const double frac = double(diff) / double(std::max<size_t>(ref.size(), 1));
    const double budget = e["mask_fraction_near_zero"].get<double>() + 1e-4;
    std::cout << "    " << what << " binary mask: " << diff << " pixels differ (fraction " << frac << ", budget "
              << budget << ")\n";
    CHECK(ref.size() == r.mask->mask.size());
    if (!(frac <= budget)) test::report(__FILE__, __LINE__, what + ": binary mask differs");
  }
}

}  // namespace

TEST(pipeline_golden_caption_refer) {
  for (const char* name : kCases) {
    Case c;
    if (!load(name, c)) continue;
    std::cout << "  " << name << "\n";
    auto p = load_pipeline(c);
    CHECK_EQ(p->info().backend, std::string("cpu"));
    CHECK(p->info().has_mask_decoder);
    auto f = p->encode(pipeline::Image{c.width, c.height, c.rgb.data()});
    std::atomic<bool> cancel{false};

    pipeline::GenerateRequest cap;
    cap.with_mask = true;  // the official caption inference decodes a mask too (debug path: the trace)
    pipeline::TaskTrace tc;
    pipeline::GenerateResult rc = pipeline::generate_traced(*p, *f, cap, cancel, tc);
    check_task(c, c.exp["caption"], rc, tc, "caption");

    pipeline::GenerateRequest ref;
    ref.task = pipeline::GenerateRequest::Refer;
    ref.context_tokens = vec<int32_t>(c.exp["context_tokens"]);
    ref.text_tokens = vec<int32_t>(c.exp["text_tokens"]);
    ref.with_mask = true;
    pipeline::TaskTrace tr;
    pipeline::GenerateResult rr = pipeline::generate_traced(*p, *f, ref, cancel, tr);
    check_task(c, c.exp["refer"], rr, tr, "refer");
  }
}

TEST(pipeline_streaming_cancel_reuse) {
  Case c;
  if (!load("bert_s1_h300", c)) return;
  auto p = load_pipeline(c);
  auto f = p->encode(pipeline::Image{c.width, c.height, c.rgb.data()});
  std::atomic<bool> cancel{false};
  std::vector<pipeline::TokenEvent> seen;
  pipeline::GenerateRequest req;
  pipeline::GenerateResult r = p->generate(*f, req, [&](const pipeline::TokenEvent& e) { seen.push_back(e); }, cancel);
  CHECK_EQ(seen.size(), r.events.size());
  for (size_t i = 0; i < seen.size() && i < r.events.size(); ++i) {
    CHECK_EQ(seen[i].token, r.events[i].token);
    CHECK_EQ(seen[i].index, static_cast<int>(i));
    CHECK(seen[i].x == r.events[i].x && seen[i].y == r.events[i].y && seen[i].logprob == r.events[i].logprob);
  }
  int calls = 0;
  CHECK_THROWS_CODE(p->generate(*f, req,
                                [&](const pipeline::TokenEvent&) {
                                  if (++calls == 3) cancel = true;
                                },
                                cancel),
                    Aborted, "cancel");
  CHECK_EQ(calls, 3);
  cancel = false;
  pipeline::GenerateResult again = p->generate(*f, req, nullptr, cancel);
  CHECK(again.tokens == r.tokens);
  // max_tokens bounds the words; beams run; dense is not available yet; segment gives an original-size mask.
  req.max_tokens = 3;
  CHECK(p->generate(*f, req, nullptr, cancel).tokens.size() <= 3);
  req.max_tokens = 0;
  req.beams = 2;
  CHECK(!p->generate(*f, req, nullptr, cancel).tokens.empty());
  CHECK_THROWS_CODE(p->dense(*f, {}, cancel), BackendUnavailable, "proposal");
  pipeline::MaskResult m = p->segment(*f, {10.f, 20.f, 200.f, 150.f}, cancel);
  CHECK_EQ(m.width, c.width);
  CHECK_EQ(m.height, c.height);
  CHECK_EQ(m.mask.size(), size_t(c.width) * c.height);
  CHECK_THROWS_CODE(p->segment(*f, {10.f, 20.f, 5.f, 150.f}, cancel), InvalidBox, "box");
  req.beams = 1;
  req.task = pipeline::GenerateRequest::Describe;
  CHECK_THROWS_CODE(p->generate(*f, req, nullptr, cancel), InvalidBox, "box");
  req.box = pipeline::Box{0.f, 0.f, 100.f, 100.f};
  CHECK(!p->generate(*f, req, nullptr, cancel).events.empty());
  req.max_tokens = 1000;
  CHECK_THROWS_CODE(p->generate(*f, req, nullptr, cancel), LimitExceeded, "max_caption_length");
  // features of another pipeline are refused
  auto q = load_pipeline(c);
  CHECK_THROWS_CODE(q->generate(*f, {}, nullptr, cancel), InvalidArgument, "another model");
  CHECK_THROWS_CODE(pipeline::Pipeline::load((c.dir / "nope").string(), {}), ModelNotFound, "not found");
  pipeline::LoadOptions bad;
  bad.backend = "tensorrt";
  CHECK_THROWS_CODE(pipeline::Pipeline::load(c.dir.string(), bad), BackendUnavailable, "tensorrt");
  bad.backend = "gpu";
  CHECK_THROWS_CODE(pipeline::Pipeline::load(c.dir.string(), bad), BackendUnavailable, "unknown backend");
}

// data.py resized_hw values (pixelllm_ref.data.resized_hw, size 384).
TEST(pipeline_resize_geometry) {
  const int cases[][4] = {{300, 384, 300, 384}, {384, 300, 384, 300}, {480, 640, 288, 384}, {640, 480, 384, 288},
                          {1, 1, 384, 384},     {100, 1000, 38, 380}, {1000, 100, 380, 38}, {333, 777, 164, 382},
                          {777, 333, 382, 164}, {383, 384, 383, 384}, {1080, 1920, 216, 384}, {2, 3, 256, 384},
                          {384, 384, 384, 384}, {1000, 1000, 384, 384}, {37, 1234, 11, 366}};
  for (const auto& t : cases) {
    const pipeline::ResizedHW r = pipeline::resized_hw(t[0], t[1], 384);
    if (r.h != t[2] || r.w != t[3])
      test::report(__FILE__, __LINE__, "resized_hw(" + std::to_string(t[0]) + ", " + std::to_string(t[1]) + ") = " +
                                           std::to_string(r.h) + "x" + std::to_string(r.w));
  }
  // A 2x2 -> 4x4 TF half-pixel bilinear upsample of one channel (values from tf.image.resize semantics).
  const uint8_t rgb[12] = {0, 0, 0, 100, 100, 100, 200, 200, 200, 44, 44, 44};
  std::vector<float> canvas(5 * 5 * 3, 0.f);
  pipeline::resize_rgb_into_canvas(rgb, 2, 2, 4, 4, canvas.data(), 5);
  const float row0[4] = {0.f, 25.f, 75.f, 100.f};  // src x = -0.25, 0.25, 0.75, 1.25 (clamped)
  for (int x = 0; x < 4; ++x) CHECK_NEAR(canvas[x * 3], row0[x], 1e-5);
  CHECK_NEAR(canvas[3 * 15], 200.f, 1e-5);     // (y 3, x 0): bottom-left
  CHECK_NEAR(canvas[3 * 5 * 3 + 3 * 3], 44.f, 1e-5);
  CHECK_NEAR(canvas[4 * 3], 0.f, 0);           // padding column stays 0
  std::vector<float> cv, mask;
  const std::vector<uint8_t> img(640 * 480 * 3, 128);
  pipeline::ImageGeometry g = pipeline::make_canvas(pipeline::Image{640, 480, img.data()}, 384, cv, mask);
  CHECK_EQ(g.valid_w, 384);
  CHECK_EQ(g.valid_h, 288);
  CHECK_NEAR(cv[(287 * 384 + 383) * 3], 128.f, 1e-4);
  CHECK_NEAR(mask[288 * 384], 0.f, 0);
  CHECK_NEAR(g.to_orig_x(384.f), 640.f, 1e-3);
  CHECK_THROWS_CODE(pipeline::make_canvas(pipeline::Image{7, 5000, img.data()}, 384, cv, mask), InvalidImage,
                    "elongated");
}
