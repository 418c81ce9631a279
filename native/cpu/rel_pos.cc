#include "cpu/rel_pos.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/vec.h"

namespace pixelllm::cpu {

void rel_pos_gather(const float* table, int64_t table_len, int64_t q_size, int64_t k_size, int64_t C, float* out) {
  const int64_t need = 2 * std::max(q_size, k_size) - 1;
  PIXELLLM_CHECK(table_len == need, ConfigMismatch,
                 "rel_pos: table has " + std::to_string(table_len) + " rows, the " + std::to_string(q_size) + "x" +
                     std::to_string(k_size) + " grid needs " + std::to_string(need) +
                     " (resize it at conversion)");
  // The official code forms the coordinates in floating point and truncates to int32.
  const double q_scale = std::max(static_cast<double>(k_size) / static_cast<double>(q_size), 1.0);
  const double k_scale = std::max(static_cast<double>(q_size) / static_cast<double>(k_size), 1.0);
  for (int64_t i = 0; i < q_size; ++i) {
    for (int64_t j = 0; j < k_size; ++j) {
      double coord = static_cast<double>(i) * q_scale - static_cast<double>(j) * k_scale +
                     static_cast<double>(k_size - 1) * k_scale;
      int64_t idx = static_cast<int64_t>(coord);
      PIXELLLM_CHECK(idx >= 0 && idx < table_len, Internal, "rel_pos: index out of range");
      std::memcpy(out + (i * k_size + j) * C, table + idx * C, static_cast<size_t>(C) * sizeof(float));
    }
  }
}

void rel_pos_bias(const float* q, int64_t ldq, int64_t heads, int64_t q_h, int64_t q_w, int64_t C, const float* rh,
                  int64_t k_h, const float* rw, int64_t k_w, float* rel_h, float* rel_w, core::ThreadPool* pool) {
  const int64_t q_len = q_h * q_w;
  core::parallel_for(pool, heads * q_len, 64, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / q_len, i = t % q_len;
      const int64_t qy = i / q_w, qx = i % q_w;
      const float* qi = q + i * ldq + h * C;
      float* oh = rel_h + (h * q_len + i) * k_h;
      float* ow = rel_w + (h * q_len + i) * k_w;
      for (int64_t ky = 0; ky < k_h; ++ky) oh[ky] = vec::dot(qi, rh + (qy * k_h + ky) * C, C);
      for (int64_t kx = 0; kx < k_w; ++kx) ow[kx] = vec::dot(qi, rw + (qx * k_w + kx) * C, C);
    }
  });
}

}  // namespace pixelllm::cpu
