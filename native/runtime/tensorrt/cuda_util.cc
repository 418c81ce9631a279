#include "runtime/tensorrt/cuda_util.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;

void cuda_check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  const std::string msg = std::string("CUDA: ") + what + ": " + cudaGetErrorName(status) + " (" +
                          std::to_string(static_cast<int>(status)) + "): " + cudaGetErrorString(status);
  cudaGetLastError();   // clear the sticky-free error state for the next call
  switch (status) {
    case cudaErrorMemoryAllocation:
      core::fail(ErrorCode::OutOfMemory, msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      core::fail(ErrorCode::BackendUnavailable, msg);
    default:
      core::fail(ErrorCode::Internal, msg);
  }
}

bool query_device(DeviceInfo* info, std::string* reason) noexcept {
  int count = 0;
  const cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    if (reason)
      *reason = std::string("no usable CUDA device: cudaGetDeviceCount returned ") + std::to_string(int(st)) +
                " (" + cudaGetErrorName(st) + ": " + cudaGetErrorString(st) + ")";
    cudaGetLastError();
    return false;
  }
  if (count <= 0) {
    if (reason) *reason = "no CUDA device";
    return false;
  }
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    if (reason) *reason = "cudaGetDeviceProperties failed";
    cudaGetLastError();
    return false;
  }
  if (info) {
    info->device = dev;
    info->name = prop.name;
    info->major = prop.major;
    info->minor = prop.minor;
    info->total_memory = prop.totalGlobalMem;
  }
  return true;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::resize(size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return;
  reset();
  if (bytes == 0) return;
  cuda_check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  bytes_ = bytes;
}

void DeviceBuffer::reset() noexcept {
  if (ptr_) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

void PinnedBuffer::resize(size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return;
  reset();
  if (bytes == 0) return;
  cuda_check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
  bytes_ = bytes;
}

void PinnedBuffer::reset() noexcept {
  if (ptr_) cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

Stream::Stream() { cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

void Stream::synchronize(const char* what) const { cuda_check(cudaStreamSynchronize(stream_), what); }

}  // namespace pixelllm::runtime::trt
