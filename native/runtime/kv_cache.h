// Per-request key/value cache of the text decoders (CPU backend), plus the small attention helpers that read it.
//
// One KvCache holds, for `layers` x `heads`, `capacity` rows of `head_dim` floats for keys and for values,
// contiguous and 64-byte aligned, allocated ONCE (new_state time), never inside the decode loop. Layout:
// key(layer, head) points at a (capacity, head_dim) row-major block, value(layer, head) likewise. Each position
// also has an "attendable" flag (padded context tokens, T5 target-padding masks).
//
// The text decoders keep one cache for the shared prefix (GIT: visual + context tokens; T5: cross-attention K/V of
// the encoder output) and one cache per live sequence (beam) for the text self-attention, so a beam reorder copies
// only text rows and a decode step reads the cache without recomputing the prefix (step cost flat in position
// apart from the O(position) attention dot products).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace pixelllm::runtime {

class KvCache {
 public:
  KvCache() = default;
  // Throws LIMIT_EXCEEDED when the sizes are not positive or too large to allocate.
  KvCache(int layers, int heads, int head_dim, int capacity);

  int layers() const noexcept { return layers_; }
  int heads() const noexcept { return heads_; }
  int head_dim() const noexcept { return head_dim_; }
  int capacity() const noexcept { return capacity_; }
  size_t bytes() const noexcept { return data_.size() * sizeof(float) + valid_.size(); }

  // Rows written so far (positions 0..length-1 hold data).
  int length() const noexcept { return length_; }
  // INTERNAL error when n exceeds the capacity.
  void set_length(int n);
  void clear() noexcept { length_ = 0; }

  float* key(int layer, int head) noexcept { return data_.data() + block(layer, 0, head); }
  const float* key(int layer, int head) const noexcept { return data_.data() + block(layer, 0, head); }
  float* value(int layer, int head) noexcept { return data_.data() + block(layer, 1, head); }
  const float* value(int layer, int head) const noexcept { return data_.data() + block(layer, 1, head); }

  // Per-position flag: 1 = keys at this position may be attended to.
  uint8_t* valid() noexcept { return valid_.data(); }
  const uint8_t* valid() const noexcept { return valid_.data(); }

  // Writes the K and V rows of `pos` for every head of `layer` from head-major rows: k_src/v_src hold
  // heads * head_dim floats (head h at h * head_dim), as a fused projection produces them.
  void write(int layer, int pos, const float* k_src, const float* v_src) noexcept;

  // Copies the first other.length() rows (and flags) of `other`, which must have the same geometry
  // (INTERNAL otherwise). Used by beam search to fork a sequence.
  void copy_from(const KvCache& other);

 private:
  size_t block(int layer, int kv, int head) const noexcept {
    return ((static_cast<size_t>(layer) * 2 + kv) * heads_ + head) * static_cast<size_t>(capacity_) * head_dim_;
  }

  int layers_ = 0, heads_ = 0, head_dim_ = 0, capacity_ = 0, length_ = 0;
  core::AlignedVector<float> data_;
  std::vector<uint8_t> valid_;
};

// out (head_dim) = sum_j probs[j] * v[j * head_dim .. ] over n rows (a contiguous KvCache block), summed in j order
// per output; accumulate = true adds to out. Vectorised over head_dim with the sums in registers.
void weighted_rows(const float* probs, int n, const float* v, int head_dim, float* out, bool accumulate) noexcept;

// out[j] = q . k_j for the n rows k_j = k + j * head_dim of a KvCache block (the text part of a decode step).
void key_dots(const float* q, const float* k, int n, int head_dim, float* out) noexcept;

// Keys transposed once for many queries (a decode step's prefix, fixed after the prefill): kt[d * ld + j] =
// k[j * head_dim + d] for j < n, zero for n <= j < ld (ld >= n, a multiple of 16).
void transpose_keys(const float* k, int n, int head_dim, float* kt, int ld) noexcept;
// out[j] = q . k_j from transpose_keys' layout, j < n: vectorised over 16 keys at a time, no horizontal sums.
void key_dots_transposed(const float* q, const float* kt, int n, int head_dim, int ld, float* out) noexcept;

}  // namespace pixelllm::runtime
