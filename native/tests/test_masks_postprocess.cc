// Mask post-processing (both MaskResize modes, pipeline/masks.h: "sam" = bilinear to the padded input, keep the
// valid region, bilinear to the original size; "evaluator" = the official evaluator's crop of the low-res logits,
// bilinear to the original size; > 0) and COCO RLE (pycocotools) against
// engines/reference/scripts/fixtures_prompt_mask.py's prompt_mask.safetensors (reference masks from torch
// interpolate, RLE from pycocotools.mask.encode). The synthetic checks run without fixtures.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"
#include "pipeline/masks.h"
#include "tests/test.h"

namespace fs = std::filesystem;
using namespace pixelllm;

namespace {

const char* const kCases[] = {"bert_s0_h384", "bert_s1_h300", "t5_s0_h384", "t5_s1_h300"};

std::shared_ptr<core::SafeTensors> open_fixture(const std::string& name) {
  fs::path root;
  if (const char* env = std::getenv("PIXELLLM_FIXTURES")) root = env;
  for (fs::path p = fs::current_path(); root.empty() && !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "build" / "fixtures" / "golden")) root = p / "build" / "fixtures" / "golden";
    if (p == p.parent_path()) break;
  }
  fs::path f = root / name / "prompt_mask.safetensors";
  if (root.empty() || !fs::exists(f)) {
    std::cout << "  SKIP " << name << ": no fixtures (run engines/reference/scripts/fixtures_prompt_mask.py)\n";
    return nullptr;
  }
  return core::SafeTensors::open(f.string());
}

std::vector<uint8_t> to_bytes(const core::Tensor& t) {
  std::vector<uint8_t> v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = t.data()[i] > 0.5f ? 1 : 0;
  return v;
}

}  // namespace

TEST(masks_postprocess_matches_reference) {
  for (const char* name : kCases) {
    auto d = open_fixture(name);
    if (!d) return;
    for (int i = 0; d->has("post" + std::to_string(i) + "_params"); ++i) {
      const std::string k = "post" + std::to_string(i);
      core::Tensor prm = d->get(k + "_params", {5}), logits = d->get(k + "_logits");
      pipeline::MaskGeometry g;
      g.valid_h = int(prm.data()[0]);
      g.valid_w = int(prm.data()[1]);
      g.padded_h = g.padded_w = int(prm.data()[2]);
      g.orig_h = int(prm.data()[3]);
      g.orig_w = int(prm.data()[4]);
      for (const auto& [mode, key] : {std::pair{pipeline::MaskResize::Evaluator, k + "_mask"},
                                      std::pair{pipeline::MaskResize::Sam, k + "_sam_mask"}}) {
        g.resize = mode;
        std::vector<uint8_t> got =
            pipeline::postprocess_mask(logits.data(), int(logits.dim(0)), int(logits.dim(1)), g);
        std::vector<uint8_t> ref = to_bytes(d->get(key));
        CHECK_EQ(got.size(), ref.size());
        int64_t diff = 0, fg = 0;
        for (size_t j = 0; j < std::min(got.size(), ref.size()); ++j) {
          diff += got[j] != ref[j];
          fg += ref[j];
        }
        std::cout << "    " << name << " " << key << " " << g.orig_w << "x" << g.orig_h << ": " << diff
                  << " pixels differ (foreground " << fg << ")\n";
        CHECK_EQ(diff, int64_t(0));
      }
    }
  }
}

// Geometry without fixtures: a low-res square whose padded-input extent is known lands where it should at the
// original size in "sam" mode, while "evaluator" stretches the truncated crop toward the bottom right.
TEST(masks_postprocess_sam_keeps_the_geometry) {
  const int m = 16, padded = 64;  // 4 input pixels per low-res cell
  std::vector<float> logits(size_t(m * m), -10.f);
  for (int y = 8; y < 12; ++y)
    for (int x = 8; x < 12; ++x) logits[size_t(y * m + x)] = 10.f;  // input pixels [32, 48) on both axes
  pipeline::MaskGeometry g;
  g.padded_h = g.padded_w = padded;
  g.valid_h = g.valid_w = 50;  // 12.5 cells: the evaluator keeps 12 and stretches them over 50 input pixels
  g.orig_h = g.orig_w = 100;   // 2 original pixels per input pixel
  auto centre = [&](const std::vector<uint8_t>& mask) {
    double s = 0, n = 0;
    for (int y = 0; y < g.orig_h; ++y)
      for (int x = 0; x < g.orig_w; ++x)
        if (mask[size_t(y * g.orig_w + x)]) s += x + 0.5, n += 1;
    return s / n;
  };
  g.resize = pipeline::MaskResize::Sam;
  const double sam = centre(pipeline::postprocess_mask(logits.data(), m, m, g));
  g.resize = pipeline::MaskResize::Evaluator;
  const double eval = centre(pipeline::postprocess_mask(logits.data(), m, m, g));
  std::cout << "    square centre (original pixels): sam " << sam << ", evaluator " << eval << ", true 80\n";
  CHECK(std::abs(sam - 80.0) < 0.5);
  CHECK(eval - 80.0 > 2.0);  // 80 * 50 / 48 = 83.3
}

TEST(masks_rle_matches_pycocotools) {
  for (const char* name : kCases) {
    auto d = open_fixture(name);
    if (!d) return;
    int n = 0;
    for (int j = 0; d->has("rle" + std::to_string(j) + "_mask"); ++j, ++n) {
      const std::string k = "rle" + std::to_string(j);
      core::Tensor m = d->get(k + "_mask"), counts = d->get(k + "_counts");
      const int h = int(m.dim(0)), w = int(m.dim(1));
      std::vector<uint8_t> mask = to_bytes(m);
      std::vector<uint32_t> got = pipeline::rle_encode(mask.data(), w, h);
      std::vector<uint32_t> want(size_t(counts.numel()));
      for (size_t i = 0; i < want.size(); ++i) want[i] = uint32_t(counts.data()[i]);
      CHECK(got == want);
      const std::string s = d->metadata().at(k);
      CHECK_EQ(pipeline::rle_to_string(got), s);
      CHECK(pipeline::rle_from_string(s) == want);
      CHECK(pipeline::rle_decode(got, w, h) == mask);
      uint64_t area = 0;
      for (uint8_t v : mask) area += v;
      CHECK_EQ(pipeline::rle_area(got), area);
      CHECK_EQ(d->metadata().at(k + "_size"), std::to_string(h) + "," + std::to_string(w));
    }
    CHECK(n >= 10);
  }
}

TEST(masks_rle_synthetic_and_errors) {
  test::Rng rng(7);
  for (int it = 0; it < 50; ++it) {
    const int w = 1 + int(rng.next() % 40), h = 1 + int(rng.next() % 40);
    std::vector<uint8_t> m(size_t(w * h));
    const uint32_t density = rng.next() % 100;
    for (auto& v : m) v = (rng.next() % 100) < density ? 1 : 0;
    std::vector<uint32_t> c = pipeline::rle_encode(m.data(), w, h);
    CHECK(pipeline::rle_decode(c, w, h) == m);
    CHECK(pipeline::rle_from_string(pipeline::rle_to_string(c)) == c);
  }
  // a mask starting with foreground begins with a zero-length run; empty masks are one run
  std::vector<uint8_t> ones(6, 1), zeros(6, 0);
  CHECK(pipeline::rle_encode(ones.data(), 3, 2) == std::vector<uint32_t>({0, 6}));
  CHECK(pipeline::rle_encode(zeros.data(), 3, 2) == std::vector<uint32_t>({6}));
  // column-major: a 2x3 mask (h=2, w=3) with only the top-right pixel set -> counts 4,1,1
  std::vector<uint8_t> tr = {0, 0, 1, 0, 0, 0};
  CHECK(pipeline::rle_encode(tr.data(), 3, 2) == std::vector<uint32_t>({4, 1, 1}));
  float box[4];
  CHECK(pipeline::mask_bbox(tr.data(), 3, 2, box));
  CHECK_EQ(box[0], 2.f);
  CHECK_EQ(box[1], 0.f);
  CHECK_EQ(box[2], 3.f);
  CHECK_EQ(box[3], 1.f);
  CHECK(!pipeline::mask_bbox(zeros.data(), 3, 2, box));
  CHECK_THROWS_CODE(pipeline::rle_decode({4, 1}, 3, 2), InvalidArgument, "cover 5 pixels");
  CHECK_THROWS_CODE(pipeline::rle_decode({4, 3}, 3, 2), InvalidArgument, "more than");
  CHECK_THROWS_CODE(pipeline::rle_from_string("0`"), InvalidArgument, "truncated");
  CHECK_THROWS_CODE(pipeline::rle_from_string(" "), InvalidArgument, "bad character");
}

TEST(masks_postprocess_semantics) {
  // identity size: no crop, no resize -> threshold only
  std::vector<float> l = {1.f, -1.f, 0.f, 2.f};
  pipeline::MaskGeometry g{2, 2, 2, 2, 2, 2};
  CHECK(pipeline::postprocess_mask(l.data(), 2, 2, g) == std::vector<uint8_t>({1, 0, 0, 1}));
  // 2x upscaling of a 1x2 row: half-pixel centres, edge clamp
  std::vector<float> row = {0.f, 4.f}, out(4);
  pipeline::resize_bilinear_half_pixel(row.data(), 1, 2, 2, out.data(), 1, 4);
  CHECK(out == std::vector<float>({0.f, 1.f, 3.f, 4.f}));
  // crop: valid 2 of 4 padded rows of a 4x4 map keeps rows 0..1 only
  std::vector<float> m4(16, -1.f);
  for (int x = 0; x < 4; ++x) m4[size_t(2 * 4 + x)] = m4[size_t(3 * 4 + x)] = 5.f;  // padded rows positive
  pipeline::MaskGeometry gc{2, 4, 4, 4, 8, 8};
  std::vector<uint8_t> r = pipeline::postprocess_mask(m4.data(), 4, 4, gc);
  int fg = 0;
  for (uint8_t v : r) fg += v;
  CHECK_EQ(fg, 0);
  pipeline::MaskGeometry bad{5, 4, 4, 4, 8, 8};
  CHECK_THROWS_CODE(pipeline::postprocess_mask(m4.data(), 4, 4, bad), InvalidArgument, "exceeds");
  pipeline::MaskGeometry zero{2, 4, 4, 4, 0, 8};
  CHECK_THROWS_CODE(pipeline::postprocess_mask(m4.data(), 4, 4, zero), InvalidArgument, "positive");
  CHECK(pipeline::parse_mask_resize("sam") == pipeline::MaskResize::Sam);
  CHECK(pipeline::parse_mask_resize("evaluator") == pipeline::MaskResize::Evaluator);
  CHECK_THROWS_CODE(pipeline::parse_mask_resize("cv2"), InvalidArgument, "mask_resize");
}
