#include "model/point_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "cpu/activations.h"
#include "cpu/norm.h"
#include "cpu/packed_linear.h"

namespace pixelllm::model {

using core::ErrorCode;

PointHeadConfig PointHeadConfig::from_json(const core::JsonReader& r) {
  PointHeadConfig c;
  c.input_dim = static_cast<int>(r.get_int("input_dim", 1, 1 << 16));
  c.hidden_dim = static_cast<int>(r.get_int("hidden_dim", 1, 1 << 16));
  c.depth = static_cast<int>(r.get_int("depth", 1, 64));
  c.num_points = static_cast<int>(r.get_int("num_points", 1, 64));
  c.num_classes = static_cast<int>(r.get_int("num_classes", 0, 1 << 12, 1));
  c.pre_norm = r.get_bool("pre_norm", false);
  const std::string act = r.get_string("activation", 16, "relu");
  PIXELLLM_CHECK(act == "gelu" || act == "relu", ModelFormat,
                 "config.json:point_head.activation: '" + act + "' not supported (gelu | relu)");
  c.gelu = act == "gelu";
  c.layer_norm_eps = static_cast<float>(r.get_number("layer_norm_eps", 0, 1, 1e-6));
  c.point_output_ignore = r.get_string("point_output_ignore", 64, "");
  return c;
}

PointHead::PointHead(const PointHeadConfig& c, const core::SafeTensors& w) : cfg_(c) {
  out_dim_ = c.num_points * (3 + c.num_classes);
  if (c.pre_norm) {
    ln_g_ = w.get("point_head.layer_norm.weight", {c.input_dim});
    ln_b_ = w.get("point_head.layer_norm.bias", {c.input_dim});
  }
  for (int i = 0; i < c.depth; ++i) {
    const int64_t in = i == 0 ? c.input_dim : c.hidden_dim;
    const int64_t out = i == c.depth - 1 ? out_dim_ : c.hidden_dim;
    const std::string p = "point_head.mlp.layers." + std::to_string(i);
    w_.push_back(cpu::PackedWeight::pack(w.get(p + ".weight", {out, in})));
    b_.push_back(w.get(p + ".bias", {out}));
  }
  PIXELLLM_CHECK(!w.has("point_head.mlp.layers." + std::to_string(c.depth) + ".weight"), ConfigMismatch,
                 "point_head: the weights have more MLP layers than config depth");
}

std::unique_ptr<PointHead> PointHead::load(const core::JsonReader& section, const core::SafeTensors& weights) {
  return std::make_unique<PointHead>(PointHeadConfig::from_json(section), weights);
}

size_t PointHead::scratch_floats(int rows) const noexcept {
  const size_t width = static_cast<size_t>(std::max({cfg_.input_dim, cfg_.hidden_dim, out_dim_}));
  return 2 * static_cast<size_t>(rows) * width;
}

void PointHead::predict(const float* hidden, int rows, float image_width, float image_height, float* corners,
                        float* logits, float* scratch) const {
  if (rows <= 0) return;
  to_corners(mlp(hidden, rows, scratch), rows, image_width, image_height, corners, logits);
}

const float* PointHead::mlp(const float* hidden, int rows, float* scratch) const {
  if (rows <= 0) return scratch;
  const size_t width = scratch_floats(rows) / 2;
  float* a = scratch;
  float* b = scratch + width;
  const float* x = hidden;
  if (cfg_.pre_norm) {
    cpu::layer_norm(hidden, rows, cfg_.input_dim, ln_g_.data(), ln_b_.data(), cfg_.layer_norm_eps, a);
    x = a;
  }
  for (int i = 0; i < cfg_.depth; ++i) {
    const int out = i == cfg_.depth - 1 ? out_dim_ : cfg_.hidden_dim;
    float* y = (x == a) ? b : a;
    cpu::linear(x, rows, w_[i], b_[i].data(), y);
    if (i < cfg_.depth - 1) {
      const int64_t n = static_cast<int64_t>(rows) * out;
      if (cfg_.gelu)
        cpu::gelu(y, n);
      else
        cpu::relu(y, n);
    }
    x = y;
  }
  return x;
}

void PointHead::to_corners(const float* x, int rows, float image_width, float image_height, float* corners,
                           float* logits) const {
  const int per = 3 + cfg_.num_classes;
  for (int r = 0; r < rows; ++r)
    for (int p = 0; p < cfg_.num_points; ++p) {
      const float* o = x + static_cast<int64_t>(r) * out_dim_ + p * per;
      if (corners) {
        float* c = corners + (static_cast<int64_t>(r) * cfg_.num_points + p) * 2;
        c[0] = (o[0] + 1.f) * 0.5f * image_width;
        c[1] = (o[1] + 1.f) * 0.5f * image_height;
      }
      if (logits)
        std::memcpy(logits + (static_cast<int64_t>(r) * cfg_.num_points + p) * (per - 2), o + 2,
                    static_cast<size_t>(per - 2) * sizeof(float));
    }
}

void PointHead::predict(const float* hidden, int rows, float image_width, float image_height, float* corners,
                        float* logits) const {
  std::vector<float> scratch(scratch_floats(rows));
  predict(hidden, rows, image_width, image_height, corners, logits, scratch.data());
}

}  // namespace pixelllm::model
