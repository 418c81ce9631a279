// EVA02 2-D rotary position embedding (official: pixel_llm/modeling/eva02_vit.py, vision_rotary_embedding_fast).
//
// For head size D the rotary half-size is R = D / 2 and each axis gets R / 2 frequencies
// f_k = 1 / theta^(2k / R). Position t along an axis is t = i / ft_seq_len * pt_seq_len. Each frequency is used
// for 2 adjacent channels (interleaved pairs). Channels [0, R) carry the row (y) angle, channels [R, D) the
// column (x) angle; tokens are the grid in row-major order (index y * grid_w + x). Rotation of a pair (a, b):
// (a cos - b sin, b cos + a sin). The official model applies it to every token except the class token.
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// Fills cos/sin tables of shape (grid_h * grid_w, head_dim). head_dim must be a multiple of 4
// (INVALID_ARGUMENT). The official model uses pt_seq_len = ft_seq_len = image_size / patch_size, theta = 10000.
// Angles are formed in float32 like the official jax code; cos/sin are evaluated in double and rounded.
void rope2d_tables(int64_t grid_h, int64_t grid_w, int64_t head_dim, double pt_seq_len, double ft_seq_len,
                   double theta, float* cos_table, float* sin_table);

// Rotates x in place: token t (row t of x, stride ld) uses table row t; every head h (at h * head_dim) is rotated.
void rope_apply(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, const float* cos_table,
                const float* sin_table, core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::cpu
