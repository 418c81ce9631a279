#include "runtime/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu/simd.h"
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

namespace {
using cpu::simd::vf;
constexpr int kL = cpu::simd::kLanes;
}  // namespace

// Four 16-float column blocks at a time in registers (a 32- or 64-wide head in one pass), then a scalar tail.
PIXELLLM_SIMD_CLONES void weighted_rows(const float* p, int n, const float* v, int head_dim, float* out,
                                        bool accumulate) noexcept {
  int c = 0;
  while (head_dim - c >= kL) {
    const int blocks = std::min(4, (head_dim - c) / kL);
    vf a[4] = {}, x;
    if (accumulate)
      for (int b = 0; b < blocks; ++b) cpu::simd::load(a[b], out + c + b * kL);
    for (int j = 0; j < n; ++j) {
      const float* vr = v + static_cast<size_t>(j) * head_dim + c;
      const float pj = p[j];
      for (int b = 0; b < blocks; ++b) {
        cpu::simd::load(x, vr + b * kL);
        a[b] += pj * x;
      }
    }
    for (int b = 0; b < blocks; ++b) cpu::simd::store(out + c + b * kL, a[b]);
    c += blocks * kL;
  }
  for (; c < head_dim; ++c) {
    float a = accumulate ? out[c] : 0.f;
    for (int j = 0; j < n; ++j) a += p[j] * v[static_cast<size_t>(j) * head_dim + c];
    out[c] = a;
  }
}

PIXELLLM_SIMD_CLONES void key_dots(const float* q, const float* k, int n, int head_dim, float* out) noexcept {
  for (int j = 0; j < n; ++j) out[j] = cpu::vec::dot(q, k + static_cast<size_t>(j) * head_dim, head_dim);
}

void transpose_keys(const float* k, int n, int head_dim, float* kt, int ld) noexcept {
  for (int d = 0; d < head_dim; ++d) {
    float* row = kt + static_cast<size_t>(d) * ld;
    for (int j = 0; j < n; ++j) row[j] = k[static_cast<size_t>(j) * head_dim + d];
    for (int j = n; j < ld; ++j) row[j] = 0.f;
  }
}

PIXELLLM_SIMD_CLONES void key_dots_transposed(const float* q, const float* kt, int n, int head_dim, int ld,
                                              float* out) noexcept {
  for (int j0 = 0; j0 < n; j0 += 4 * kL) {
    const int blocks = std::min(4, (std::min(n - j0, 4 * kL) + kL - 1) / kL);  // padded keys are zero
    vf a[4] = {}, x;
    for (int d = 0; d < head_dim; ++d) {
      const float* row = kt + static_cast<size_t>(d) * ld + j0;
      const float qd = q[d];
      for (int b = 0; b < blocks; ++b) {
        cpu::simd::load(x, row + b * kL);
        a[b] += qd * x;
      }
    }
    for (int b = 0; b < blocks; ++b) {
      const int m = std::min(kL, n - j0 - b * kL);
      if (m == kL) {
        cpu::simd::store(out + j0 + b * kL, a[b]);
      } else {
        for (int l = 0; l < m; ++l) out[j0 + b * kL + l] = a[b][l];
      }
    }
  }
}

}  // namespace pixelllm::runtime
