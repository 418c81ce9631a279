// Multi-head scaled dot-product attention over row-major (T, H*D) activations, tiled with an online softmax
// (flash-attention style) so the score matrix held at any time is one (kQueryBlock x kKeyBlock) tile per thread.
// Uses its own loops, not BLAS, so it can run inside the thread pool (parallel over heads x query blocks).
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

constexpr int64_t kAttnQueryBlock = 32;
constexpr int64_t kAttnKeyBlock = 64;

// Optional additive terms on the scaled scores (both may be set; they add up).
struct AttentionBias {
  // Dense bias: (i, j) of head h is data[h * head_stride + i * ld + j]. ld = 0 broadcasts one row of kv_len
  // values to every query (a key padding mask); head_stride = 0 shares the bias between heads.
  const float* data = nullptr;
  int64_t ld = 0;
  int64_t head_stride = 0;
  // SAM decomposed relative position bias (see rel_pos.h): keys lie on a (k_h, k_w) grid, key j = (j / k_w,
  // j % k_w); bias(i, j) = rel_h[h][i][j / k_w] + rel_w[h][i][j % k_w] with rel_h (heads, q_len, k_h) and
  // rel_w (heads, q_len, k_w) contiguous. kv_len must equal k_h * k_w.
  const float* rel_h = nullptr;
  const float* rel_w = nullptr;
  int64_t k_h = 0;
  int64_t k_w = 0;
};

struct AttentionArgs {
  int64_t q_len = 0;
  int64_t kv_len = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  // Row i of Q is q + i * ldq, its head h starts at h * head_dim (so q/k/v may be slices of a fused qkv buffer).
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  int64_t ldk = 0;
  const float* v = nullptr;
  int64_t ldv = 0;
  float* out = nullptr;  // (q_len, heads * head_dim) with row stride ldo; must not alias q/k/v
  int64_t ldo = 0;
  float scale = 1.0f;    // scores = scale * q.k + bias (usually 1 / sqrt(head_dim))
  // Causal: query i sees keys j <= i + causal_offset (with a KV cache holding earlier tokens:
  // causal_offset = kv_len - q_len).
  bool causal = false;
  int64_t causal_offset = 0;
  AttentionBias bias;
};

// out = softmax(scale * Q K^T + bias [+ causal mask]) V per head. A query whose keys are all masked (-inf)
// gets a zero output row. INVALID_ARGUMENT on inconsistent sizes.
void attention(const AttentionArgs& args, core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::cpu
