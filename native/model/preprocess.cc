#include "model/preprocess.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"

namespace pixelllm::model {

PixelNormalization PixelNormalization::from_config(const core::JsonReader& section) {
  PixelNormalization n;
  n.image_size = static_cast<int>(section.get_int("image_size", 1, 16384));
  auto mean = section.get_number_array("pixel_mean", 3, -1e6, 1e6);
  auto stdv = section.get_number_array("pixel_std", 3, -1e6, 1e6);
  PIXELLLM_CHECK(mean.size() == 3 && stdv.size() == 3, ConfigMismatch,
                 section.path() + ": pixel_mean and pixel_std must have 3 values (RGB)");
  for (int c = 0; c < 3; ++c) {
    PIXELLLM_CHECK(stdv[c] > 0, ConfigMismatch, section.path() + ".pixel_std must be positive");
    n.mean[c] = static_cast<float>(mean[c]);
    n.std[c] = static_cast<float>(stdv[c]);
  }
  return n;
}

namespace {

template <typename T>
void normalize_impl(const T* rgb, int size, int valid_width, int valid_height, const PixelNormalization& norm,
                    float* out, core::ThreadPool* pool) {
  PIXELLLM_CHECK(rgb != nullptr && out != nullptr, InvalidArgument, "preprocess: null image or output buffer");
  PIXELLLM_CHECK(size == norm.image_size, InvalidArgument,
                 "preprocess: canvas is " + std::to_string(size) + " px but the encoder expects image_size " +
                     std::to_string(norm.image_size));
  PIXELLLM_CHECK(valid_width >= 1 && valid_height >= 1 && valid_width <= size && valid_height <= size, InvalidImage,
                 "preprocess: valid region " + std::to_string(valid_width) + "x" + std::to_string(valid_height) +
                     " does not fit the " + std::to_string(size) + "x" + std::to_string(size) + " canvas");
  const float m0 = norm.mean[0], m1 = norm.mean[1], m2 = norm.mean[2];
  const float s0 = norm.std[0], s1 = norm.std[1], s2 = norm.std[2];
  core::parallel_for(pool, size, 16, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      float* o = out + y * size * 3;
      if (y >= valid_height) {
        std::memset(o, 0, sizeof(float) * size * 3);
        continue;
      }
      const T* p = rgb + y * size * 3;
      for (int x = 0; x < valid_width; ++x) {
        // (x - mean) / std in float32, the official order (a division, not a multiply by 1/std).
        o[3 * x + 0] = (static_cast<float>(p[3 * x + 0]) - m0) / s0;
        o[3 * x + 1] = (static_cast<float>(p[3 * x + 1]) - m1) / s1;
        o[3 * x + 2] = (static_cast<float>(p[3 * x + 2]) - m2) / s2;
      }
      std::memset(o + 3 * valid_width, 0, sizeof(float) * 3 * (size - valid_width));
    }
  });
}

}  // namespace

void normalize_image(const uint8_t* rgb, int size, int valid_width, int valid_height, const PixelNormalization& norm,
                     float* out, core::ThreadPool* pool) {
  normalize_impl(rgb, size, valid_width, valid_height, norm, out, pool);
}

void normalize_image(const float* rgb, int size, int valid_width, int valid_height, const PixelNormalization& norm,
                     float* out, core::ThreadPool* pool) {
  normalize_impl(rgb, size, valid_width, valid_height, norm, out, pool);
}

}  // namespace pixelllm::model
