#include "core/tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "core/env.h"

namespace pixelllm::core {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    PIXELLLM_CHECK(d >= 0, LimitExceeded, "tensor shape " + shape_str(shape) + " has a negative dimension");
    if (d != 0 && n > kMaxTensorElements / d)
      fail(ErrorCode::LimitExceeded, "tensor shape " + shape_str(shape) + " is too large");
    n *= d;
  }
  PIXELLLM_CHECK(n <= kMaxTensorElements, LimitExceeded, "tensor shape " + shape_str(shape) + " is too large");
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

namespace {
// Buffers of at least this size start on a 2 MiB boundary and are advised as transparent huge pages: a decode
// step streams ~270 MB of weights (official-bert) and 4 KiB pages stop the hardware prefetcher at every page;
// measured on the CI VM, a GEMV pass over the decoder's weights read 26-27 GB/s with the advice, 22-23 GB/s
// without (alternated runs). Where THP is "never" the advice is a no-op. PIXELLLM_HUGEPAGES=0 turns it off.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeFrom = size_t(4) << 20;

bool huge_pages_wanted() {
  static const bool wanted = env_int("PIXELLLM_HUGEPAGES", 1, 0, 1) != 0;
  return wanted;
}
}  // namespace

void* aligned_alloc_bytes(size_t bytes) {
  size_t rounded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  if (rounded == 0) rounded = kTensorAlignment;
  const bool huge = rounded >= kHugeFrom && huge_pages_wanted();
  void* p = huge ? std::aligned_alloc(kHugePage, (rounded + kHugePage - 1) / kHugePage * kHugePage)
                 : std::aligned_alloc(kTensorAlignment, rounded);
  if (!p) fail(ErrorCode::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes");
#ifdef MADV_HUGEPAGE
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: a failure leaves normal pages
#endif
  return p;
}

void aligned_free(void* p) noexcept { std::free(p); }

void Tensor::set_shape(const Shape& shape) {
  numel_ = shape_numel(shape);
  shape_ = shape;
  strides_.assign(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) strides_[i] = strides_[i + 1] * shape[i + 1];
}

Tensor Tensor::empty(const Shape& shape) {
  Tensor t;
  t.set_shape(shape);
  float* p = static_cast<float*>(aligned_alloc_bytes(t.nbytes()));
  t.storage_ = std::shared_ptr<const void>(p, [](const void* q) { aligned_free(const_cast<void*>(q)); });
  t.data_ = p;
  t.owning_ = true;
  return t;
}

Tensor Tensor::zeros(const Shape& shape) {
  Tensor t = empty(shape);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(float* data, const Shape& shape, std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.set_shape(shape);
  PIXELLLM_CHECK(data != nullptr || t.numel_ == 0, InvalidArgument, "Tensor::view of a null pointer");
  PIXELLLM_CHECK(reinterpret_cast<uintptr_t>(data) % alignof(float) == 0, InvalidArgument,
                 "Tensor::view needs a 4-byte aligned pointer");
  t.data_ = data;
  t.storage_ = std::move(keepalive);
  t.owning_ = false;
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  PIXELLLM_CHECK(j >= 0 && j < n, InvalidArgument,
                 "dim " + std::to_string(i) + " out of range for shape " + shape_str(shape_));
  return shape_[j];
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      PIXELLLM_CHECK(infer < 0, InvalidArgument, "reshape: more than one -1 in " + shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      PIXELLLM_CHECK(s[i] >= 0, InvalidArgument, "reshape: negative dimension in " + shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    PIXELLLM_CHECK(known != 0 && numel_ % known == 0, InvalidArgument,
                   "reshape: cannot infer " + shape_str(shape) + " from " + shape_str(shape_));
    s[infer] = numel_ / known;
  }
  PIXELLLM_CHECK(shape_numel(s) == numel_, InvalidArgument,
                 "reshape: " + shape_str(shape_) + " -> " + shape_str(shape) + " changes the element count");
  Tensor t = *this;
  t.set_shape(s);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_);
  if (numel_) std::memcpy(t.data_, data_, nbytes());
  return t;
}

int64_t Tensor::offset(std::initializer_list<int64_t> idx) const {
#ifndef NDEBUG
  PIXELLLM_CHECK(static_cast<int>(idx.size()) == ndim(), InvalidArgument,
                 "Tensor::at: " + std::to_string(idx.size()) + " indices for shape " + shape_str(shape_));
#endif
  int64_t off = 0;
  int i = 0;
  for (int64_t v : idx) {
#ifndef NDEBUG
    PIXELLLM_CHECK(v >= 0 && v < shape_[i], InvalidArgument,
                   "Tensor::at: index " + std::to_string(v) + " out of range in dim " + std::to_string(i) +
                       " of shape " + shape_str(shape_));
#endif
    off += v * strides_[i];
    ++i;
  }
  return off;
}

}  // namespace pixelllm::core
