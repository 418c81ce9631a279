#include "cpu/rel_pos.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "cpu/simd.h"

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

namespace {

using simd::vf;

// out[k] = sum_c q[c] * rt[c * k_pad + k] for k in [0, k_pad) (k_pad a multiple of 16): one query against the
// transposed (C, k_pad) slice of a gathered table, the keys in vector lanes.
PIXELLLM_SIMD_CLONES void rel_row(const float* q, const float* rt, int64_t C, int64_t k_pad, float* out) {
  for (int64_t k0 = 0; k0 < k_pad; k0 += 16) {
    vf acc = {}, r;
    for (int64_t c = 0; c < C; ++c) {
      simd::load(r, rt + c * k_pad + k0);
      acc += q[c] * r;
    }
    simd::store(out + k0, acc);
  }
}

// table (rows, k, C) -> (rows, C, k_pad), zero-padded keys.
void transpose_table(const float* t, int64_t rows, int64_t k, int64_t C, int64_t k_pad, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      float* o = out + (r * C + c) * k_pad;
      for (int64_t j = 0; j < k; ++j) o[j] = t[(r * k + j) * C + c];
      for (int64_t j = k; j < k_pad; ++j) o[j] = 0.f;
    }
}

}  // namespace

void rel_pos_bias(const float* q, int64_t ldq, int64_t heads, int64_t q_h, int64_t q_w, int64_t C, const float* rh,
                  int64_t k_h, const float* rw, int64_t k_w, float* rel_h, float* rel_w, core::ThreadPool* pool) {
  const int64_t q_len = q_h * q_w;
  const int64_t kh_pad = (k_h + 15) / 16 * 16, kw_pad = (k_w + 15) / 16 * 16;
  thread_local core::AlignedVector<float> th, tw;  // the caller's thread
  th.resize(static_cast<size_t>(q_h * C * kh_pad));
  tw.resize(static_cast<size_t>(q_w * C * kw_pad));
  transpose_table(rh, q_h, k_h, C, kh_pad, th.data());
  transpose_table(rw, q_w, k_w, C, kw_pad, tw.data());
  const float* tht = th.data();
  const float* twt = tw.data();
  core::parallel_for(pool, heads * q_len, 64, [&](int64_t t0, int64_t t1) {
    float buf[2 * 64];
    float* bh = kh_pad <= 64 ? buf : nullptr;
    float* bw = kw_pad <= 64 ? buf + 64 : nullptr;
    core::AlignedVector<float> big;
    if (!bh || !bw) {
      big.resize(static_cast<size_t>(kh_pad + kw_pad));
      bh = big.data();
      bw = big.data() + kh_pad;
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / q_len, i = t % q_len;
      const int64_t qy = i / q_w, qx = i % q_w;
      const float* qi = q + i * ldq + h * C;
      rel_row(qi, tht + qy * C * kh_pad, C, kh_pad, bh);
      rel_row(qi, twt + qx * C * kw_pad, C, kw_pad, bw);
      std::memcpy(rel_h + (h * q_len + i) * k_h, bh, sizeof(float) * size_t(k_h));
      std::memcpy(rel_w + (h * q_len + i) * k_w, bw, sizeof(float) * size_t(k_w));
    }
  });
}

}  // namespace pixelllm::cpu
