// SAM decomposed relative position bias (official: baselines/segment_anything/modeling/image_encoder.py,
// Attention.get_rel_pos / add_decomposed_rel_pos; the same math as segment-anything).
//
// A table of 2 * max(q, k) - 1 rows (already resized to the runtime grid at conversion) is gathered into
// R[i, j] = table[i * max(k/q, 1) - j * max(q/k, 1) + (k - 1) * max(q/k, 1)] (coordinates truncated to int).
// For a query grid (q_h, q_w) and key grid (k_h, k_w): rel_h[i, ky] = q_i . Rh[qy(i), ky] and
// rel_w[i, kx] = q_i . Rw[qx(i), kx] with the UNSCALED query q_i; cpu::attention adds
// rel_h[i, j / k_w] + rel_w[i, j % k_w] to the scores (AttentionBias.rel_h / rel_w).
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// out (q_size, k_size, C) from table (table_len, C); CONFIG_MISMATCH unless table_len == 2 * max(q, k) - 1.
void rel_pos_gather(const float* table, int64_t table_len, int64_t q_size, int64_t k_size, int64_t C, float* out);

// For each head h: q rows at q + i * ldq + h * C (q_len = q_h * q_w, row-major grid), rh (q_h, k_h, C),
// rw (q_w, k_w, C) from rel_pos_gather; writes rel_h (heads, q_len, k_h) and rel_w (heads, q_len, k_w).
void rel_pos_bias(const float* q, int64_t ldq, int64_t heads, int64_t q_h, int64_t q_w, int64_t C, const float* rh,
                  int64_t k_h, const float* rw, int64_t k_w, float* rel_h, float* rel_w,
                  core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::cpu
