// Shared fixture loading for the text-side tests (test_text.cc: models; test_text_decoding.cc: decoding).
// engines/reference/scripts/fixtures_text.py writes build/fixtures/golden/<case>/: config.json + model.safetensors +
// text.safetensors; PIXELLLM_FIXTURES overrides the root. Loaders print SKIP and return false when absent.
#pragma once

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "model/git_decoder.h"
#include "model/point_head.h"
#include "model/t5.h"
#include "tests/fixture_util.h"
#include "tests/test.h"

namespace pixelllm::test::text {

inline const auto& kCases = kGoldenCases;
constexpr double kTol = 1e-4;

// A golden fixture case with its text-side models loaded and its inputs unpacked.
struct TextCase : Fixture {
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
};

// format: how the decoder's weights are packed (cpu/packed_linear.h; bf16 for the opt-in decoder weights).
inline bool load_case(const std::string& name, TextCase& c, cpu::WeightFormat format = cpu::WeightFormat::f32) {
  if (!load_fixture({"PIXELLLM_FIXTURES", "golden", "text", "engines/reference/scripts/fixtures_text.py"}, name, c))
    return false;
  core::JsonReader top(c.config, "config.json");
  const std::string head = top.get_string("text_decoder");
  if (head == "git_decoder")
    c.decoder = model::GitDecoder::load(top.object("git_decoder"), *c.weights, format);
  else
    c.decoder = model::T5::load(top.object("t5"), *c.weights, format);
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
inline std::vector<int32_t> clean_after_eos(std::vector<int32_t> t, int32_t eos) {
  bool seen = false;
  for (auto& x : t) {
    if (seen) x = 0;
    if (x == eos) seen = true;
  }
  return t;
}

// x0, y0, x1, y1 against a reference box: rel L2 <= kTol and every coordinate within 0.01 px.
inline void check_box(const float* box, const core::Tensor& ref, const std::string& what) {
  double err = rel_l2(box, ref.data(), 4);
  double maxabs = 0;
  for (int i = 0; i < 4; ++i) maxabs = std::max(maxabs, double(std::fabs(box[i] - ref.data()[i])));
  std::cout << "    " << what << " box rel L2 " << err << " max abs " << maxabs << " px\n";
  if (!(err <= kTol && maxabs <= 0.01))
    report(__FILE__, __LINE__, what + ": box rel L2 " + std::to_string(err) + " max abs " + std::to_string(maxabs));
}

// Rows [0, rows) of a (L, ...) reference against ours.
inline void check_rows(const float* ours, const core::Tensor& ref, int rows, const std::string& what) {
  const int64_t per = ref.numel() / ref.dim(0);
  double err = rel_l2(ours, ref.data(), rows * per);
  std::cout << "    " << what << " rel L2 " << err << "\n";
  if (!(err <= kTol)) report(__FILE__, __LINE__, what + ": rel L2 " + std::to_string(err));
}

}  // namespace pixelllm::test::text
