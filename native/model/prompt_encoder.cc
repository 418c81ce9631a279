#include "model/prompt_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "model/two_way_transformer.h"

namespace pixelllm::model {

namespace {

constexpr float kTwoPi = 6.283185307179586f;

// torch.linspace(start, end, n) in float32 (the first half counts up from start, the second down from end).
std::vector<float> linspace(float start, float end, int n) {
  std::vector<float> v(static_cast<size_t>(n));
  if (n == 1) {
    v[0] = start;
    return v;
  }
  const float step = (end - start) / float(n - 1);
  for (int i = 0; i < n; ++i) v[size_t(i)] = i < n / 2 ? start + step * float(i) : end - step * float(n - 1 - i);
  return v;
}

}  // namespace

PromptEncoderConfig PromptEncoderConfig::from_json(const core::Json& config) {
  core::JsonReader root(config, "config.json");
  core::JsonReader r = root.object("prompt_encoder");
  PromptEncoderConfig c;
  c.embed_dim = static_cast<int>(r.get_int("embed_dim", 2, 1 << 14));
  c.num_point_embeddings = static_cast<int>(r.get_int("num_point_embeddings", 1, 64, 4));
  c.box_points_per_side = static_cast<int>(r.get_int("box_points_per_side", 0, 64, 2));
  c.box_point_with_offset = r.get_bool("box_point_with_offset", false);
  c.use_box = r.get_number("prompt_use_box_rate", 0.0, 1.0, 0.0) > 0.0;
  c.image_size = static_cast<int>(root.get_int("image_size", 1, 1 << 14));
  PIXELLLM_CHECK(c.embed_dim % 2 == 0, ConfigMismatch,
                 "config.json:prompt_encoder.embed_dim must be even (sin and cos halves), got " +
                     std::to_string(c.embed_dim));
  PIXELLLM_CHECK(c.num_point_embeddings >= 4, ConfigMismatch,
                 "config.json:prompt_encoder.num_point_embeddings must be >= 4 (point labels 0/1, box corners 2/3)");
  return c;
}

PromptEncoder::PromptEncoder(const core::Json& config, const core::SafeTensors& weights)
    : PromptEncoder(PromptEncoderConfig::from_json(config), weights) {}

PromptEncoder::PromptEncoder(const PromptEncoderConfig& c, const core::SafeTensors& weights) : cfg_(c) {
  const int64_t E = c.embed_dim;
  core::PrefixWeights w(weights, "prompt_encoder.");
  gauss_ = w.get("shared_embedding.positional_embedding", {2, E / 2});
  for (int i = 0; i < c.num_point_embeddings; ++i)
    point_.push_back(w.get("point_embed." + std::to_string(i) + ".weight", {1, E}));
  not_a_point_ = w.get("not_a_point_embed.weight", {1, E});
  no_mask_ = w.get("no_mask_embed.weight", {1, E});
  w.finish();

  // utils.build_solid_grid: n x n points, x fastest; n < 1 gives the two corners (0,0), (1,1).
  const int n = c.box_points_per_side;
  if (n < 1) {
    grid_ = {0.f, 0.f, 1.f, 1.f};
  } else {
    const float off = c.box_point_with_offset ? 1.0f / float(2 * n) : 0.f;
    std::vector<float> side = linspace(off, 1.f - off, n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        grid_.push_back(side[size_t(j)]);
        grid_.push_back(side[size_t(i)]);
      }
  }
  adapter_tokens_ = int(grid_.size() / 2) + 1;
  PIXELLLM_CHECK(!c.use_box || adapter_tokens_ >= 2, ConfigMismatch,
                 "prompt_encoder: the point prompt is too short to hold a box");
}

void PromptEncoder::fourier(float x01, float y01, float* out) const {
  const int64_t half = cfg_.embed_dim / 2;
  const float tx = 2.f * x01 - 1.f, ty = 2.f * y01 - 1.f;
  const float* g0 = gauss_.data();
  const float* g1 = g0 + half;
  for (int64_t j = 0; j < half; ++j) {
    const float t = (tx * g0[j] + ty * g1[j]) * kTwoPi;
    out[j] = std::sin(t);
    out[half + j] = std::cos(t);
  }
}

void PromptEncoder::embed_box(const float* box, float* out) const {
  const int64_t E = cfg_.embed_dim;
  const float s = float(cfg_.image_size);
  for (int c = 0; c < 2; ++c) {
    float* o = out + c * E;
    fourier((box[2 * c] + 0.5f) / s, (box[2 * c + 1] + 0.5f) / s, o);
    const float* corner = point_[size_t(2 + c)].data();
    for (int64_t j = 0; j < E; ++j) o[j] += corner[j];
  }
}

void PromptEncoder::sparse_for_adapter(const float* boxes, int64_t prompts, float* out) const {
  const int64_t E = cfg_.embed_dim, T = adapter_tokens_;
  const float s = float(cfg_.image_size);
  const float* positive = point_[1].data();
  for (int64_t p = 0; p < prompts; ++p) {
    const float* b = boxes + 4 * p;
    float* o = out + p * T * E;
    const bool valid = std::max(std::max(b[0], b[1]), std::max(b[2], b[3])) > 0.f;
    if (cfg_.use_box && valid) {
      embed_box(b, o);
      for (int64_t t = 2; t < T; ++t) std::memcpy(o + t * E, no_mask_.data(), size_t(E) * sizeof(float));
      continue;
    }
    const float w = b[2] - b[0], h = b[3] - b[1];
    for (int64_t t = 0; t + 1 < T; ++t) {  // utils.boxes_to_points: xy + grid * wh, then the +0.5 shift
      const float x = b[0] + grid_[size_t(2 * t)] * w, y = b[1] + grid_[size_t(2 * t + 1)] * h;
      float* ot = o + t * E;
      fourier((x + 0.5f) / s, (y + 0.5f) / s, ot);
      for (int64_t j = 0; j < E; ++j) ot[j] += positive[j];
    }
    std::memcpy(o + (T - 1) * E, not_a_point_.data(), size_t(E) * sizeof(float));  // the padding point
  }
}

void PromptEncoder::dense_pe(int64_t h, int64_t w, float* out) const {
  PIXELLLM_CHECK(h > 0 && w > 0, InvalidArgument, "prompt_encoder: dense PE grid must be non-empty");
  const int64_t E = cfg_.embed_dim;
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j)
      fourier((float(j) + 0.5f) / float(w), (float(i) + 0.5f) / float(h), out + (i * w + j) * E);
}

}  // namespace pixelllm::model
