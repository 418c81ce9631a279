#include "runtime/kv_cache.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu/vec.h"

namespace pixelllm::runtime {

using core::ErrorCode;

KvCache::KvCache(int layers, int heads, int head_dim, int capacity)
    : layers_(layers), heads_(heads), head_dim_(head_dim), capacity_(capacity) {
  PIXELLLM_CHECK(layers > 0 && heads > 0 && head_dim > 0 && capacity > 0, LimitExceeded,
                 "kv cache: invalid geometry layers=" + std::to_string(layers) + " heads=" + std::to_string(heads) +
                     " head_dim=" + std::to_string(head_dim) + " capacity=" + std::to_string(capacity));
  // 2 (K, V) * layers * heads * capacity * head_dim floats; shape_numel checks overflow and the global limit.
  int64_t n = core::shape_numel({2, layers, heads, capacity, head_dim});
  data_.assign(static_cast<size_t>(n), 0.f);
  valid_.assign(static_cast<size_t>(capacity), 0);
}

void KvCache::set_length(int n) {
  PIXELLLM_CHECK(n >= 0 && n <= capacity_, Internal,
                 "kv cache: length " + std::to_string(n) + " outside capacity " + std::to_string(capacity_));
  length_ = n;
}

void KvCache::write(int layer, int pos, const float* k_src, const float* v_src) noexcept {
  const size_t row = static_cast<size_t>(pos) * head_dim_;
  const size_t bytes = static_cast<size_t>(head_dim_) * sizeof(float);
  for (int h = 0; h < heads_; ++h) {
    std::memcpy(key(layer, h) + row, k_src + static_cast<size_t>(h) * head_dim_, bytes);
    std::memcpy(value(layer, h) + row, v_src + static_cast<size_t>(h) * head_dim_, bytes);
  }
}

void KvCache::copy_from(const KvCache& other) {
  PIXELLLM_CHECK(other.layers_ == layers_ && other.heads_ == heads_ && other.head_dim_ == head_dim_ &&
                     other.capacity_ == capacity_,
                 Internal, "kv cache: copy between caches of different geometry");
  if (&other == this) return;
  const size_t rows = static_cast<size_t>(other.length_) * head_dim_ * sizeof(float);
  for (int l = 0; l < layers_; ++l)
    for (int kv = 0; kv < 2; ++kv)
      for (int h = 0; h < heads_; ++h)
        std::memcpy(data_.data() + block(l, kv, h), other.data_.data() + other.block(l, kv, h), rows);
  std::memcpy(valid_.data(), other.valid_.data(), static_cast<size_t>(other.length_));
  length_ = other.length_;
}

void weighted_rows(const float* p, int n, const float* v, int head_dim, float* out, bool accumulate) noexcept {
  if (!accumulate) std::memset(out, 0, static_cast<size_t>(head_dim) * sizeof(float));
  for (int j = 0; j < n; ++j) cpu::vec::axpy(p[j], v + static_cast<size_t>(j) * head_dim, out, head_dim);
}

}  // namespace pixelllm::runtime
