// Float32 tensor: a shape, contiguous row-major strides and a shared buffer that is either owned (64-byte aligned,
// allocated here) or a non-owning view (e.g. into a mmapped safetensors file, kept alive by `keepalive`).
// Copies share the buffer (like a shared_ptr); `clone()` makes a deep copy. Kernels take raw pointers, so a
// Tensor is only the container that model code passes around.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace pixelllm::core {

using Shape = std::vector<int64_t>;

constexpr size_t kTensorAlignment = 64;
// Largest tensor we ever allocate (elements); larger requests fail with LIMIT_EXCEEDED before allocating.
constexpr int64_t kMaxTensorElements = int64_t(1) << 34;

// Number of elements of `shape`; throws LIMIT_EXCEEDED on negative dims, overflow or > kMaxTensorElements.
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"

// 64-byte aligned allocation of `bytes` (rounded up to 64); throws OUT_OF_MEMORY. Free with aligned_free.
void* aligned_alloc_bytes(size_t bytes);
void aligned_free(void* p) noexcept;

// std::allocator-compatible aligned allocator, for scratch vectors that kernels vectorise over.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(aligned_alloc_bytes(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { aligned_free(p); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// AlignedAllocator whose value-less construction default-initialises (floats: left uninitialised): for the scratch
// buffers of a forward pass, which every kernel writes before it reads. Zero-filling them (AlignedVector) was memset
// at 2.8 % of a demo encode's perf samples (the buffers of one image add up to ~6 MB by their sizes).
template <typename T>
struct ScratchAllocator : AlignedAllocator<T> {
  ScratchAllocator() = default;
  template <typename U>
  ScratchAllocator(const ScratchAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <typename T>
using ScratchVector = std::vector<T, ScratchAllocator<T>>;

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape);  // owning, uninitialised
  static Tensor zeros(const Shape& shape);  // owning, zero-filled
  // Non-owning view over `data` (needs 4-byte alignment); `keepalive` holds whatever owns the memory.
  static Tensor view(float* data, const Shape& shape, std::shared_ptr<const void> keepalive = nullptr);

  float* data() noexcept { return data_; }
  const float* data() const noexcept { return data_; }
  const Shape& shape() const noexcept { return shape_; }
  const Shape& strides() const noexcept { return strides_; }  // in elements, contiguous row-major
  int ndim() const noexcept { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end; throws INVALID_ARGUMENT when out of range
  int64_t numel() const noexcept { return numel_; }
  size_t nbytes() const noexcept { return static_cast<size_t>(numel_) * sizeof(float); }
  bool defined() const noexcept { return data_ != nullptr || numel_ == 0; }
  bool owns() const noexcept { return owning_; }
  bool aligned() const noexcept { return reinterpret_cast<uintptr_t>(data_) % kTensorAlignment == 0; }

  // Same buffer, new shape with equal numel (one dim may be -1).
  Tensor reshape(const Shape& shape) const;
  Tensor clone() const;  // owning, aligned deep copy

  // Element access; bounds-checked (throws INVALID_ARGUMENT) when NDEBUG is not defined.
  template <typename... I>
  float& at(I... idx) {
    return data_[offset({static_cast<int64_t>(idx)...})];
  }
  template <typename... I>
  const float& at(I... idx) const {
    return data_[offset({static_cast<int64_t>(idx)...})];
  }

 private:
  int64_t offset(std::initializer_list<int64_t> idx) const;
  void set_shape(const Shape& shape);

  std::shared_ptr<const void> storage_;
  float* data_ = nullptr;
  Shape shape_;
  Shape strides_;
  int64_t numel_ = 0;
  bool owning_ = false;
};

}  // namespace pixelllm::core
