#include "model/feature_fusion.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace pixelllm::model {

namespace {
const char* const kKnownKeys[] = {"eva02_encoder", "sam_image_encoder"};
}

FeatureFusionConfig FeatureFusionConfig::from_json(const core::JsonReader& s) {
  FeatureFusionConfig c;
  const std::string where = s.path() + ": ";
  PIXELLLM_CHECK(s.has("feature_keys") && s.raw().at("feature_keys").is_array(), ModelFormat,
                 s.path() + ".feature_keys must be an array of component names");
  for (const auto& k : s.raw().at("feature_keys")) {
    PIXELLLM_CHECK(k.is_string(), ModelFormat, s.path() + ".feature_keys must hold strings");
    c.feature_keys.push_back(k.get<std::string>());
  }
  for (int64_t v : s.get_int_array("input_sizes", 16, 1, 16384)) c.input_sizes.push_back(int(v));
  for (int64_t v : s.get_int_array("input_channels", 16, 1, 1 << 20)) c.input_channels.push_back(int(v));
  c.output_size = static_cast<int>(s.get_int("output_size", 1, 16384));
  c.out_channels = static_cast<int>(s.get_int("out_channels", 1, 1 << 22));
  const std::string method = s.get_string("resize_method", 64, "bicubic");

  PIXELLLM_CHECK(!c.feature_keys.empty() && c.feature_keys.size() == c.input_sizes.size() &&
                     c.feature_keys.size() == c.input_channels.size(),
                 ConfigMismatch, where + "feature_keys, input_sizes and input_channels must be non-empty and equally long");
  std::set<std::string> seen;
  int64_t total = 0;
  for (size_t i = 0; i < c.feature_keys.size(); ++i) {
    const std::string& k = c.feature_keys[i];
    PIXELLLM_CHECK(std::find(std::begin(kKnownKeys), std::end(kKnownKeys), k) != std::end(kKnownKeys),
                   ConfigMismatch, where + "unsupported feature key '" + k + "' (eva02_encoder, sam_image_encoder)");
    PIXELLLM_CHECK(seen.insert(k).second, ConfigMismatch, where + "feature key '" + k + "' listed twice");
    total += c.input_channels[i];
  }
  PIXELLLM_CHECK(total == c.out_channels, ConfigMismatch,
                 where + "out_channels " + std::to_string(c.out_channels) + " != sum of input_channels " +
                     std::to_string(total));
  if (method == "bicubic" || method == "cubic")
    c.method = cpu::ResizeMethod::Cubic;
  else if (method == "bilinear" || method == "linear")
    c.method = cpu::ResizeMethod::Linear;
  else
    core::fail(core::ErrorCode::ConfigMismatch, where + "unsupported resize_method '" + method + "'");
  return c;
}

FeatureFusion::FeatureFusion(const core::JsonReader& section, const core::SafeTensors& weights,
                             const std::string& prefix)
    : cfg_(FeatureFusionConfig::from_json(section)) {
  for (const std::string& n : weights.names())
    PIXELLLM_CHECK(n.compare(0, prefix.size(), prefix) != 0, ConfigMismatch,
                   weights.path() + ": unexpected tensor '" + n + "' (feature_fusion has no parameters)");
}

void FeatureFusion::check_input(const std::string& key, int grid, int channels) const {
  auto it = std::find(cfg_.feature_keys.begin(), cfg_.feature_keys.end(), key);
  PIXELLLM_CHECK(it != cfg_.feature_keys.end(), InvalidArgument, "feature_fusion: '" + key + "' is not an input");
  const size_t i = static_cast<size_t>(it - cfg_.feature_keys.begin());
  PIXELLLM_CHECK(cfg_.input_sizes[i] == grid && cfg_.input_channels[i] == channels, ConfigMismatch,
                 "feature_fusion: input '" + key + "' is configured as " + std::to_string(cfg_.input_sizes[i]) + "x" +
                     std::to_string(cfg_.input_sizes[i]) + "x" + std::to_string(cfg_.input_channels[i]) +
                     " but its encoder gives " + std::to_string(grid) + "x" + std::to_string(grid) + "x" +
                     std::to_string(channels));
}

void FeatureFusion::forward(const std::vector<const float*>& inputs, float* out, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(inputs.size() == cfg_.feature_keys.size(), InvalidArgument,
                 "feature_fusion: expected " + std::to_string(cfg_.feature_keys.size()) + " inputs, got " +
                     std::to_string(inputs.size()));
  PIXELLLM_CHECK(out != nullptr, InvalidArgument, "feature_fusion: null output buffer");
  const int64_t O = cfg_.output_size, Ct = cfg_.out_channels, pixels = O * O;
  int64_t offset = 0;
  core::AlignedVector<float> resized, scratch;
  for (size_t i = 0; i < inputs.size(); ++i) {
    PIXELLLM_CHECK(inputs[i] != nullptr, InvalidArgument,
                   "feature_fusion: missing input '" + cfg_.feature_keys[i] + "'");
    const int64_t s = cfg_.input_sizes[i], c = cfg_.input_channels[i];
    const float* src = inputs[i];
    if (s != O) {
      resized.resize(static_cast<size_t>(pixels * c));
      scratch.resize(static_cast<size_t>(cpu::resize_scratch_size(1, O, s, c)));
      cpu::resize_nhwc(src, 1, s, s, c, resized.data(), O, O, cfg_.method, /*antialias=*/true, scratch.data(),
                       pool);
      src = resized.data();
    }
    core::parallel_for(pool, pixels, 64, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) std::memcpy(out + p * Ct + offset, src + p * c, sizeof(float) * c);
    });
    offset += c;
  }
}

void FeatureFusion::forward(const float* eva02_encoder, const float* sam_image_encoder, float* out,
                            core::ThreadPool* pool) const {
  std::vector<const float*> inputs;
  for (const std::string& k : cfg_.feature_keys) inputs.push_back(k == "eva02_encoder" ? eva02_encoder : sam_image_encoder);
  forward(inputs, out, pool);
}

}  // namespace pixelllm::model
