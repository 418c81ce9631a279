#include "cpu/resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"

namespace pixelllm::cpu {

namespace {

// Every step below is float32, in the order jax (and pixelllm_ref.jax_resize, arithmetic="float32") evaluates it.
// This file is compiled with -ffp-contract=off so no step is fused into an FMA.
float triangle(float x) { return std::max(0.0f, 1.0f - std::fabs(x)); }

float keys_cubic(float x) {  // a = -0.5, x >= 0
  if (x >= 2.0f) return 0.0f;
  if (x >= 1.0f) return ((-0.5f * x + 2.5f) * x - 4.0f) * x + 2.0f;
  return ((1.5f * x - 2.5f) * x) * x + 1.0f;
}

// numpy's float32 pairwise summation (np.sum(..., dtype=float32) over a contiguous row), added to 0.
float pairwise_sum(const float* a, int64_t n) {
  if (n < 8) {
    float r = 0.0f;
    for (int64_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

std::vector<float> resize_weights(int64_t in_size, int64_t out_size, ResizeMethod method, bool antialias) {
  PIXELLLM_CHECK(in_size > 0 && out_size > 0, InvalidArgument,
                 "resize: sizes must be positive, got " + std::to_string(in_size) + " -> " + std::to_string(out_size));
  PIXELLLM_CHECK(in_size <= (1 << 20) && out_size <= (1 << 20), LimitExceeded,
                 "resize: sizes above 2^20 (" + std::to_string(in_size) + " -> " + std::to_string(out_size) + ")");
  std::vector<float> w(static_cast<size_t>(out_size * in_size), 0.0f);
  if (in_size == out_size) {
    for (int64_t j = 0; j < out_size; ++j) w[j * in_size + j] = 1.0f;
    return w;
  }
  const float scale = static_cast<float>(static_cast<double>(out_size) / static_cast<double>(in_size));
  const float inv_scale = 1.0f / scale;
  const float kernel_scale = antialias ? std::max(inv_scale, 1.0f) : 1.0f;
  const float eps = 1000.0f * std::numeric_limits<float>::epsilon();
  const float upper = static_cast<float>(static_cast<double>(in_size) - 0.5);
  for (int64_t j = 0; j < out_size; ++j) {
    const float sample = (static_cast<float>(j) + 0.5f) * inv_scale - 0.5f;
    float* row = w.data() + j * in_size;
    for (int64_t i = 0; i < in_size; ++i) {
      const float d = std::fabs(sample - static_cast<float>(i)) / kernel_scale;
      row[i] = method == ResizeMethod::Linear ? triangle(d) : keys_cubic(d);
    }
    const float total = pairwise_sum(row, in_size);
    const bool inside = sample >= -0.5f && sample <= upper;
    if (!inside || !(std::fabs(total) > eps)) {
      std::fill(row, row + in_size, 0.0f);
    } else {
      for (int64_t i = 0; i < in_size; ++i) row[i] /= total;
    }
  }
  return w;
}

ResizePlan resize_plan(int64_t in_size, int64_t out_size, ResizeMethod method, bool antialias) {
  ResizePlan p;
  p.in_size = in_size;
  p.out_size = out_size;
  p.identity = in_size == out_size;
  std::vector<float> dense = resize_weights(in_size, out_size, method, antialias);
  for (int64_t j = 0; j < out_size; ++j) {
    const float* row = dense.data() + j * in_size;
    int64_t lo = 0, hi = in_size;
    while (lo < hi && row[lo] == 0.0f) ++lo;
    while (hi > lo && row[hi - 1] == 0.0f) --hi;
    p.first.push_back(lo);
    p.count.push_back(hi - lo);
    p.offset.push_back(static_cast<int64_t>(p.w.size()));
    for (int64_t i = lo; i < hi; ++i) p.w.push_back(row[i]);
  }
  return p;
}

int64_t resize_scratch_size(int64_t batch, int64_t out_height, int64_t width, int64_t channels) {
  return batch * out_height * width * channels;
}

namespace {

// Resizes axis 1 of (outer, in, inner) into (outer, out, inner).
void resize_axis(const float* x, int64_t outer, int64_t inner, const ResizePlan& p, float* y,
                 core::ThreadPool* pool) {
  const int64_t in = p.in_size, out = p.out_size;
  core::parallel_for(pool, outer * out, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / out, j = t % out;
      float* dst = y + (o * out + j) * inner;
      std::fill(dst, dst + inner, 0.f);
      const float* w = p.w.data() + p.offset[j];
      for (int64_t k = 0; k < p.count[j]; ++k) {
        const float wk = w[k];
        const float* src = x + (o * in + p.first[j] + k) * inner;
        for (int64_t c = 0; c < inner; ++c) dst[c] += wk * src[c];
      }
    }
  });
}

}  // namespace

void resize_nhwc(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float* y,
                 int64_t out_height, int64_t out_width, ResizeMethod method, bool antialias, float* scratch,
                 core::ThreadPool* pool) {
  ResizePlan ph = resize_plan(height, out_height, method, antialias);
  ResizePlan pw = resize_plan(width, out_width, method, antialias);
  const float* cur = x;
  if (!ph.identity) {
    float* dst = pw.identity ? y : scratch;
    resize_axis(cur, batch, width * channels, ph, dst, pool);
    cur = dst;
  }
  if (!pw.identity) {
    resize_axis(cur, batch * out_height, channels, pw, y, pool);
  } else if (ph.identity) {
    std::memcpy(y, x, static_cast<size_t>(batch * height * width * channels) * sizeof(float));
  }
}

}  // namespace pixelllm::cpu
