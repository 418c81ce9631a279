#include "pipeline/masks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace pixelllm::pipeline {

namespace {

// Per output index along one axis: the two source indices and weights (torch upsample_bilinear2d
// align_corners=False arithmetic in float: scale = in / out, s = max(scale * (d + 0.5) - 0.5, 0)).
struct Axis {
  std::vector<int> i0, i1;
  std::vector<float> w0, w1;
};

// The first `count` (<= out) outputs of a resize from `in` to `out`.
Axis axis_weights(int in, int out, int count) {
  Axis a;
  a.i0.resize(size_t(count));
  a.i1.resize(size_t(count));
  a.w0.resize(size_t(count));
  a.w1.resize(size_t(count));
  const float scale = float(in) / float(out);
  for (int d = 0; d < count; ++d) {
    float s = scale * (float(d) + 0.5f) - 0.5f;
    if (s < 0.f) s = 0.f;
    const int i0 = std::min(static_cast<int>(std::floor(s)), in - 1);
    const float t = std::min(std::max(s - float(i0), 0.f), 1.f);
    a.i0[size_t(d)] = i0;
    a.i1[size_t(d)] = i0 < in - 1 ? i0 + 1 : i0;
    a.w1[size_t(d)] = t;
    a.w0[size_t(d)] = 1.f - t;
  }
  return a;
}

// The top-left (out_h, out_w) region of the resize of `in` to (full_h, full_w).
void resize_region(const float* in, int in_h, int in_w, int in_stride, int full_h, int full_w, float* out,
                   int out_h, int out_w) {
  const Axis ay = axis_weights(in_h, full_h, out_h), ax = axis_weights(in_w, full_w, out_w);
  for (int y = 0; y < out_h; ++y) {
    const float* r0 = in + int64_t(ay.i0[size_t(y)]) * in_stride;
    const float* r1 = in + int64_t(ay.i1[size_t(y)]) * in_stride;
    const float wy0 = ay.w0[size_t(y)], wy1 = ay.w1[size_t(y)];
    float* o = out + int64_t(y) * out_w;
    for (int x = 0; x < out_w; ++x) {
      const int x0 = ax.i0[size_t(x)], x1 = ax.i1[size_t(x)];
      const float wx0 = ax.w0[size_t(x)], wx1 = ax.w1[size_t(x)];
      const float t0 = r0[x0] * wx0 + r0[x1] * wx1;
      const float t1 = r1[x0] * wx0 + r1[x1] * wx1;
      o[x] = t0 * wy0 + t1 * wy1;
    }
  }
}

}  // namespace

MaskResize parse_mask_resize(const std::string& name) {
  if (name == "sam") return MaskResize::Sam;
  if (name == "evaluator") return MaskResize::Evaluator;
  throw core::Error(core::ErrorCode::InvalidArgument,
                    "mask_resize must be \"sam\" or \"evaluator\", got \"" + name + "\"");
}

void resize_bilinear_half_pixel(const float* in, int in_h, int in_w, int in_stride, float* out, int out_h,
                                int out_w) {
  PIXELLLM_CHECK(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0 && in_stride >= in_w, InvalidArgument,
                 "resize_bilinear: sizes must be positive");
  resize_region(in, in_h, in_w, in_stride, out_h, out_w, out, out_h, out_w);
}

void postprocess_mask(const float* logits, int mh, int mw, const MaskGeometry& g, uint8_t* out, float threshold) {
  PIXELLLM_CHECK(mh > 0 && mw > 0 && g.padded_h > 0 && g.padded_w > 0 && g.valid_h > 0 && g.valid_w > 0 &&
                     g.orig_h > 0 && g.orig_w > 0,
                 InvalidArgument, "postprocess_mask: sizes must be positive");
  PIXELLLM_CHECK(g.valid_h <= g.padded_h && g.valid_w <= g.padded_w, InvalidArgument,
                 "postprocess_mask: valid region " + std::to_string(g.valid_w) + "x" + std::to_string(g.valid_h) +
                     " exceeds the padded input " + std::to_string(g.padded_w) + "x" + std::to_string(g.padded_h));
  std::vector<float> up(size_t(g.orig_h) * size_t(g.orig_w));
  if (g.resize == MaskResize::Sam) {
    std::vector<float> valid(size_t(g.valid_h) * size_t(g.valid_w));
    resize_region(logits, mh, mw, mw, g.padded_h, g.padded_w, valid.data(), g.valid_h, g.valid_w);
    resize_region(valid.data(), g.valid_h, g.valid_w, g.valid_w, g.orig_h, g.orig_w, up.data(), g.orig_h, g.orig_w);
  } else {
    // official: int(input_h * (mask_h / padded_h)) in double precision
    const int ch = std::max(1, static_cast<int>(double(g.valid_h) * (double(mh) / double(g.padded_h))));
    const int cw = std::max(1, static_cast<int>(double(g.valid_w) * (double(mw) / double(g.padded_w))));
    resize_region(logits, ch, cw, mw, g.orig_h, g.orig_w, up.data(), g.orig_h, g.orig_w);
  }
  for (size_t i = 0; i < up.size(); ++i) out[i] = up[i] > threshold ? 1 : 0;
}

std::vector<uint8_t> postprocess_mask(const float* logits, int mh, int mw, const MaskGeometry& g, float threshold) {
  PIXELLLM_CHECK(g.orig_h > 0 && g.orig_w > 0, InvalidArgument, "postprocess_mask: sizes must be positive");
  std::vector<uint8_t> out(size_t(g.orig_h) * size_t(g.orig_w));
  postprocess_mask(logits, mh, mw, g, out.data(), threshold);
  return out;
}

std::vector<uint32_t> rle_encode(const uint8_t* mask, int width, int height) {
  PIXELLLM_CHECK(width >= 0 && height >= 0, InvalidArgument, "rle_encode: negative size");
  std::vector<uint32_t> counts;
  uint8_t prev = 0;
  uint32_t run = 0;
  for (int x = 0; x < width; ++x)
    for (int y = 0; y < height; ++y) {
      const uint8_t v = mask[int64_t(y) * width + x] ? 1 : 0;
      if (v != prev) {
        counts.push_back(run);
        run = 0;
        prev = v;
      }
      ++run;
    }
  counts.push_back(run);
  return counts;
}

std::vector<uint8_t> rle_decode(const std::vector<uint32_t>& counts, int width, int height) {
  PIXELLLM_CHECK(width >= 0 && height >= 0, InvalidArgument, "rle_decode: negative size");
  const uint64_t n = uint64_t(width) * uint64_t(height);
  std::vector<uint8_t> mask(size_t(n), 0);
  uint64_t pos = 0;
  uint8_t v = 0;
  for (uint32_t c : counts) {
    PIXELLLM_CHECK(pos + c <= n, InvalidArgument,
                   "rle_decode: counts cover more than " + std::to_string(width) + "x" + std::to_string(height) +
                       " pixels");
    if (v)
      for (uint64_t i = pos; i < pos + c; ++i) mask[size_t((i % uint64_t(height)) * uint64_t(width) + i / height)] = 1;
    pos += c;
    v ^= 1;
  }
  PIXELLLM_CHECK(pos == n, InvalidArgument,
                 "rle_decode: counts cover " + std::to_string(pos) + " pixels, expected " + std::to_string(n));
  return mask;
}

std::string rle_to_string(const std::vector<uint32_t>& counts) {
  std::string s;
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= int64_t(counts[i - 2]);
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;  // arithmetic shift (C++20 defined, every supported compiler in C++17)
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

std::vector<uint32_t> rle_from_string(const std::string& s) {
  std::vector<uint32_t> counts;
  size_t p = 0;
  while (p < s.size()) {
    // Bits are gathered in uint64_t: pycocotools' signed shifts overflow (undefined behaviour) for long groups.
    uint64_t bits = 0;
    int k = 0;
    bool more = true;
    while (more) {
      PIXELLLM_CHECK(p < s.size(), InvalidArgument, "rle_from_string: truncated RLE string");
      const int c = static_cast<unsigned char>(s[p]) - 48;
      PIXELLLM_CHECK(c >= 0 && c <= 63, InvalidArgument,
                     "rle_from_string: bad character at " + std::to_string(p));
      PIXELLLM_CHECK(k < 13, InvalidArgument, "rle_from_string: count too long at " + std::to_string(p));
      bits |= uint64_t(c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10) && 5 * k < 64) bits |= ~uint64_t(0) << (5 * k);  // sign extension
    }
    int64_t x = static_cast<int64_t>(bits);
    // |x| <= 2^40 keeps the delta addition from overflowing; anything larger is out of range anyway.
    if (counts.size() > 2 && x > -(int64_t(1) << 40) && x < (int64_t(1) << 40))
      x += int64_t(counts[counts.size() - 2]);
    PIXELLLM_CHECK(x >= 0 && x <= int64_t(UINT32_MAX), InvalidArgument,
                   "rle_from_string: count " + std::to_string(counts.size()) + " out of range");
    counts.push_back(static_cast<uint32_t>(x));
  }
  return counts;
}

uint64_t rle_area(const std::vector<uint32_t>& counts) {
  uint64_t a = 0;
  for (size_t i = 1; i < counts.size(); i += 2) a += counts[i];
  return a;
}

bool mask_bbox(const uint8_t* mask, int width, int height, float box[4]) {
  int x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      if (mask[int64_t(y) * width + x]) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
  if (x1 < 0) {
    box[0] = box[1] = box[2] = box[3] = 0.f;
    return false;
  }
  box[0] = float(x0);
  box[1] = float(y0);
  box[2] = float(x1 + 1);
  box[3] = float(y1 + 1);
  return true;
}

}  // namespace pixelllm::pipeline
