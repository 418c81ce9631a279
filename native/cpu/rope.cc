#include "cpu/rope.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"

namespace pixelllm::cpu {

void rope2d_tables(int64_t grid_h, int64_t grid_w, int64_t head_dim, double pt_seq_len, double ft_seq_len,
                   double theta, float* cos_table, float* sin_table) {
  PIXELLLM_CHECK(head_dim > 0 && head_dim % 4 == 0, InvalidArgument,
                 "rope2d: head_dim " + std::to_string(head_dim) + " is not a positive multiple of 4");
  PIXELLLM_CHECK(grid_h > 0 && grid_w > 0 && pt_seq_len > 0 && ft_seq_len > 0 && theta > 0, InvalidArgument,
                 "rope2d: non-positive grid, sequence length or theta");
  const int64_t R = head_dim / 2;  // per-axis channels
  const int64_t F = R / 2;         // per-axis frequencies
  // float32 steps as in jax: freqs = 1 / theta ** (arange(0, R, 2) / R); t = arange(n) / ft * pt; angle = t * f.
  auto freq = [&](int64_t k) {
    float e = static_cast<float>(2 * k) / static_cast<float>(R);
    return 1.0f / std::pow(static_cast<float>(theta), e);
  };
  auto pos = [&](int64_t i) { return static_cast<float>(i) / static_cast<float>(ft_seq_len) *
                                     static_cast<float>(pt_seq_len); };
  for (int64_t y = 0; y < grid_h; ++y) {
    for (int64_t x = 0; x < grid_w; ++x) {
      float* c = cos_table + (y * grid_w + x) * head_dim;
      float* s = sin_table + (y * grid_w + x) * head_dim;
      for (int64_t k = 0; k < F; ++k) {
        const float f = freq(k);
        const float ay = pos(y) * f;
        const float ax = pos(x) * f;
        c[2 * k] = c[2 * k + 1] = static_cast<float>(std::cos(static_cast<double>(ay)));
        s[2 * k] = s[2 * k + 1] = static_cast<float>(std::sin(static_cast<double>(ay)));
        c[R + 2 * k] = c[R + 2 * k + 1] = static_cast<float>(std::cos(static_cast<double>(ax)));
        s[R + 2 * k] = s[R + 2 * k + 1] = static_cast<float>(std::sin(static_cast<double>(ax)));
      }
    }
  }
}

void rope_apply(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, const float* cos_table,
                const float* sin_table, core::ThreadPool* pool) {
  PIXELLLM_CHECK(head_dim % 2 == 0, InvalidArgument, "rope_apply: odd head_dim");
  core::parallel_for(pool, tokens, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* c = cos_table + t * head_dim;
      const float* s = sin_table + t * head_dim;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + t * ld + h * head_dim;
        for (int64_t p = 0; p < head_dim; p += 2) {
          const float a = v[p], b = v[p + 1];
          v[p] = a * c[p] - b * s[p];
          v[p + 1] = b * c[p + 1] + a * s[p + 1];
        }
      }
    }
  });
}

}  // namespace pixelllm::cpu
