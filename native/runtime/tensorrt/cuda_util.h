// CUDA runtime helpers for the TensorRT backend: error mapping to core::Error, device probing that never crashes,
// RAII device / pinned-host buffers and streams.
#pragma once

#include <cstddef>
#include <string>

#include <cuda_runtime_api.h>

#include "core/error.h"

namespace pixelllm::runtime::trt {

// Throws core::Error (OUT_OF_MEMORY for cudaErrorMemoryAllocation, BACKEND_UNAVAILABLE for missing devices or
// drivers, INTERNAL otherwise) naming `what` and the CUDA error string.
void cuda_check(cudaError_t status, const char* what);

struct DeviceInfo {
  int device = 0;
  std::string name;         // e.g. "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0; // compute capability
  size_t total_memory = 0;
};

// false (with the reason) when there is no usable device: cudaGetDeviceCount failing (35 = driver too old /
// missing, 100 = no device) or returning 0. Never throws.
bool query_device(DeviceInfo* info, std::string* reason) noexcept;

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { resize(bytes); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  void resize(size_t bytes);   // reallocates only when growing; contents are not kept
  void reset() noexcept;
  void* get() const noexcept { return ptr_; }
  template <typename T>
  T* as() const noexcept { return static_cast<T*>(ptr_); }
  size_t bytes() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost): the staging area of every host <-> device copy, so that copies are
// asynchronous on the stream and can be part of a captured CUDA graph.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void resize(size_t bytes);
  void reset() noexcept;
  void* get() const noexcept { return ptr_; }
  template <typename T>
  T* as() const noexcept { return static_cast<T*>(ptr_); }
  size_t bytes() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const noexcept { return stream_; }
  void synchronize(const char* what) const;

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace pixelllm::runtime::trt
