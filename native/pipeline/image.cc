#include "pipeline/image.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace pixelllm::pipeline {

ResizedHW resized_hw(int h, int w, int size) {
  // data.py resized_hw, step by step in float32 (np.float32 arithmetic; int() truncates).
  const float max_o = static_cast<float>(std::max(w, h)), min_o = static_cast<float>(std::min(w, h));
  const float ratio = max_o / min_o;
  const float fsize = static_cast<float>(size);
  int small = size;
  int larger = static_cast<int>(fsize * ratio);
  if (ratio * fsize > fsize) {
    small = static_cast<int>(std::floor((fsize * min_o) / max_o));
    larger = static_cast<int>(static_cast<float>(small) * ratio);
  }
  if ((w <= h && w == small) || (h <= w && h == small)) return {h, w};
  return w < h ? ResizedHW{larger, small} : ResizedHW{small, larger};
}

namespace {

struct Tap {
  int lo = 0, hi = 0;
  float t = 0;
};

// TF ResizeBilinear compute_interpolation_weights with HalfPixelScaler.
std::vector<Tap> taps(int in, int out) {
  std::vector<Tap> v(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int i = 0; i < out; ++i) {
    const float src = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float f = std::floor(src);
    v[i].lo = std::max(static_cast<int>(f), 0);
    v[i].hi = std::min(static_cast<int>(std::ceil(src)), in - 1);
    v[i].t = src - f;
  }
  return v;
}

}  // namespace

void resize_rgb_into_canvas(const uint8_t* rgb, int width, int height, int out_h, int out_w, float* canvas,
                            int canvas_size) {
  PIXELLLM_CHECK(out_h >= 1 && out_w >= 1 && out_h <= canvas_size && out_w <= canvas_size, Internal,
                 "resize: target larger than the canvas");
  const size_t stride = static_cast<size_t>(canvas_size) * 3;
  if (out_h == height && out_w == width) {
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width * 3; ++x)
        canvas[y * stride + x] = static_cast<float>(rgb[static_cast<size_t>(y) * width * 3 + x]);
    return;
  }
  const std::vector<Tap> ty = taps(height, out_h), tx = taps(width, out_w);
  for (int y = 0; y < out_h; ++y) {
    const uint8_t* top = rgb + static_cast<size_t>(ty[y].lo) * width * 3;
    const uint8_t* bot = rgb + static_cast<size_t>(ty[y].hi) * width * 3;
    const float wy = ty[y].t;
    float* dst = canvas + y * stride;
    for (int x = 0; x < out_w; ++x) {
      const int l = tx[x].lo * 3, r = tx[x].hi * 3;
      const float wx = tx[x].t;
      for (int c = 0; c < 3; ++c) {
        const float tl = top[l + c], tr = top[r + c], bl = bot[l + c], br = bot[r + c];
        const float t = tl + (tr - tl) * wx;
        const float b = bl + (br - bl) * wx;
        dst[x * 3 + c] = t + (b - t) * wy;
      }
    }
  }
}

size_t feature_bytes(const ImageFeatures& f) {
  return sizeof(ImageFeatures) + (f.features.capacity() + f.sam.capacity()) * sizeof(float);
}

ImageGeometry make_canvas(const Image& image, int size, std::vector<float>& canvas, std::vector<float>& mask) {
  PIXELLLM_CHECK(image.rgb != nullptr && image.width >= 1 && image.height >= 1, InvalidImage,
                 "image: empty or without pixels");
  ImageGeometry g;
  g.orig_w = image.width;
  g.orig_h = image.height;
  g.size = size;
  const ResizedHW r = resized_hw(image.height, image.width, size);
  PIXELLLM_CHECK(r.h >= 1 && r.w >= 1 && r.h <= size && r.w <= size, InvalidImage,
                 "image: " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                     " is too elongated to resize to " + std::to_string(size) + " pixels");
  g.valid_h = r.h;
  g.valid_w = r.w;
  canvas.assign(static_cast<size_t>(size) * size * 3, 0.f);
  mask.assign(static_cast<size_t>(size) * size, 0.f);
  resize_rgb_into_canvas(image.rgb, image.width, image.height, r.h, r.w, canvas.data(), size);
  for (int y = 0; y < r.h; ++y) std::fill_n(mask.begin() + static_cast<size_t>(y) * size, r.w, 1.f);
  return g;
}

}  // namespace pixelllm::pipeline
