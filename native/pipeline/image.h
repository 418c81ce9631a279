// Preprocessing of the original image and the per-image feature cache (pipeline::ImageFeatures).
//
// Geometry follows the official input pipeline (scenic baselines/centernet/transforms.py resize with
// get_size_with_aspect_ratio(size=S, max_size=S), as `engines/reference/pixelllm_ref/data.py::resized_hw` ports
// it, float32 arithmetic included): the longer side becomes S (or S-1 by float rounding), aspect kept; then the
// image is padded bottom/right with zeros to S x S (pad_images) and the padding mask marks the valid rectangle.
// Resampling filter: tf.image.resize's default, bilinear with half-pixel centres and no antialiasing
// (TF ResizeBilinear, half_pixel_centers=True: src = (dst + 0.5) * in/out - 0.5, lower = max(floor(src), 0),
// upper = min(ceil(src), in - 1), weight = src - floor(src)), on float 0..255 values (no re-quantisation);
// an image already of the resized size is copied exactly.
// Coordinates: the model works in pixels of the resized, unpadded image; points and boxes go back to the original
// image by x * orig_w / resized_w, y * orig_h / resized_h (the inverse of the official r_width / r_height).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "pipeline/pipeline.h"

namespace pixelllm::pipeline {

struct ResizedHW {
  int h = 0, w = 0;
};

// Port of data.py resized_hw (centernet get_size_with_aspect_ratio(size, max_size=size) in float32).
ResizedHW resized_hw(int h, int w, int size);

// Bilinear resize of an RGB8 image (TF half-pixel rules above) into the top-left out_h x out_w of a
// (canvas, canvas, 3) float canvas that the caller zero-filled.
void resize_rgb_into_canvas(const uint8_t* rgb, int width, int height, int out_h, int out_w, float* canvas,
                            int canvas_size);

struct ImageGeometry {
  int orig_w = 0, orig_h = 0;      // the original image
  int valid_w = 0, valid_h = 0;    // the resized image inside the padded canvas
  int size = 0;                    // canvas side (config image_size)

  // original pixels -> pixels of the resized image, and back.
  float to_model_x(float x) const { return x * static_cast<float>(valid_w) / static_cast<float>(orig_w); }
  float to_model_y(float y) const { return y * static_cast<float>(valid_h) / static_cast<float>(orig_h); }
  float to_orig_x(float x) const { return x * static_cast<float>(orig_w) / static_cast<float>(valid_w); }
  float to_orig_y(float y) const { return y * static_cast<float>(orig_h) / static_cast<float>(valid_h); }
  Box to_model(const Box& b) const { return {to_model_x(b.x0), to_model_y(b.y0), to_model_x(b.x1), to_model_y(b.y1)}; }
  Box to_orig(const Box& b) const { return {to_orig_x(b.x0), to_orig_y(b.y0), to_orig_x(b.x1), to_orig_y(b.y1)}; }
};

// Builds the padded canvas (size, size, 3) float 0..255 and the padding mask (size, size) of an image.
// INVALID_IMAGE for an empty image or a null pointer.
ImageGeometry make_canvas(const Image& image, int size, std::vector<float>& canvas, std::vector<float>& mask);

}  // namespace pixelllm::pipeline

// The opaque type pipeline.h declares: encoder outputs + geometry, immutable once encode() returns except for the
// lazily filled cache of whole-image visual tokens (guarded by its mutex).
struct pixelllm::pipeline::ImageFeatures {
  const void* owner = nullptr;     // the Pipeline that encoded it (features of another model are refused)
  ImageGeometry geometry;
  std::vector<float> features;     // (G, G, C) fused
  std::vector<float> sam;          // (g, g, 256)
  mutable std::mutex mu;
  mutable std::vector<float> whole_image_tokens;  // (T, Dv) visual tokens of the default prompt box, once computed
};
