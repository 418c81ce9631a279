// Per-branch pixel normalisation of the image canvas the encoders read (official
// pixel_llm/modeling/utils.py::preprocess with the constants of pixel_llm.py: SAM_PIXEL_MEAN/STD for the SAM
// branch, GIT_PIXEL_MEAN/STD = CLIP statistics x 255 for the EVA02 branch; reference:
// engines/reference/pixelllm_ref/preprocess.py).
//
// The canvas is image_size x image_size RGB (row-major, NHWC) with the resized image placed top-left
// (valid_width x valid_height pixels) and the rest padding: out = (pixel - mean) / std in float32 inside the
// valid rectangle, exactly 0 in the padding. Resizing is done before (in JS by sharp); the official
// bilinear resize to image_size is a no-op here because the canvas already is image_size (checked).
#pragma once

#include <array>
#include <cstdint>

#include "core/json.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct PixelNormalization {
  int image_size = 0;               // canvas side the branch expects
  std::array<float, 3> mean{};      // RGB, 0..255 scale, rounded to float32 like jnp.asarray(..., float32)
  std::array<float, 3> std{};

  // Reads image_size, pixel_mean[3], pixel_std[3] of an encoder section (sam_image_encoder / eva02_encoder).
  // MODEL_FORMAT on missing/mistyped keys, CONFIG_MISMATCH on a non-positive std.
  static PixelNormalization from_config(const core::JsonReader& section);
};

// rgb: (size, size, 3) canvas, uint8 or float 0..255; out: (size, size, 3) float. INVALID_ARGUMENT when size
// differs from norm.image_size or a pointer is null; INVALID_IMAGE when the valid rectangle is empty or larger
// than the canvas.
void normalize_image(const uint8_t* rgb, int size, int valid_width, int valid_height, const PixelNormalization& norm,
                     float* out, core::ThreadPool* pool = nullptr);
void normalize_image(const float* rgb, int size, int valid_width, int valid_height, const PixelNormalization& norm,
                     float* out, core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::model
