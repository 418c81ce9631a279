// Fusion of the backbone feature maps the text branch reads (no parameters). Official
// pixel_llm/modeling/utils.py::concat_visual_features(features, text_decoder_feature_key); reference:
// engines/reference/pixelllm_ref/feature_fusion.py.
//
// Each input map (size_i, size_i, channels_i) NHWC whose grid differs from output_size is resized with the exact
// jax.image.resize weights (cpu/resize.h: bicubic Keys a=-0.5, antialiased when shrinking); the maps are
// concatenated on channels in feature_keys order. PixelLLM: ["eva02_encoder", "sam_image_encoder"], EVA02
// 27x27xC_eva unchanged, then SAM 24x24x256 resized to 27x27 -> (27, 27, C_eva + 256).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "cpu/resize.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct FeatureFusionConfig {
  std::vector<std::string> feature_keys;  // component names, concat order
  std::vector<int> input_sizes;           // square grids
  std::vector<int> input_channels;
  int output_size = 0;
  int out_channels = 0;
  cpu::ResizeMethod method = cpu::ResizeMethod::Cubic;

  // MODEL_FORMAT for missing/mistyped keys; CONFIG_MISMATCH for unknown/duplicate keys, lists of different
  // lengths, out_channels != sum(input_channels), or a resize_method other than bicubic/cubic/linear/bilinear.
  static FeatureFusionConfig from_json(const core::JsonReader& section);
};

class FeatureFusion {
 public:
  // The component has no tensors: any "<prefix>..." tensor in `weights` is refused (CONFIG_MISMATCH).
  FeatureFusion(const core::JsonReader& section, const core::SafeTensors& weights,
                const std::string& prefix = "feature_fusion.");

  const FeatureFusionConfig& config() const noexcept { return cfg_; }
  int output_size() const noexcept { return cfg_.output_size; }
  int out_channels() const noexcept { return cfg_.out_channels; }
  int64_t output_floats() const noexcept { return int64_t(cfg_.output_size) * cfg_.output_size * cfg_.out_channels; }

  // CONFIG_MISMATCH unless input `key` is listed with this grid and channel count (for the pipeline to check the
  // encoders it built against this section); INVALID_ARGUMENT for an unknown key.
  void check_input(const std::string& key, int grid, int channels) const;

  // inputs[i]: map of feature_keys[i], (input_sizes[i], input_sizes[i], input_channels[i]) NHWC;
  // out: (output_size, output_size, out_channels) NHWC, caller-provided. Thread-safe.
  void forward(const std::vector<const float*>& inputs, float* out, core::ThreadPool* pool = nullptr) const;
  // Same, by component name: a listed key whose pointer is null is INVALID_ARGUMENT.
  void forward(const float* eva02_encoder, const float* sam_image_encoder, float* out,
               core::ThreadPool* pool = nullptr) const;

 private:
  FeatureFusionConfig cfg_;
};

}  // namespace pixelllm::model
