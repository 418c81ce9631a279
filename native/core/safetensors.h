// Reader for .safetensors files (https://github.com/huggingface/safetensors format): the file is mmapped and its
// header is validated in full when opened, before any tensor is touched:
//   file >= 8 bytes; header length (u64 LE) <= kMaxHeaderBytes and inside the file; header is a JSON object
//   without duplicate keys; each entry (except "__metadata__", an object of strings) is an object with exactly
//   "dtype" in {F32, F16, BF16}, "shape" (non-negative integers, element count without overflow) and
//   "data_offsets" [begin, end] with begin <= end <= data size, end - begin == numel * itemsize; no two tensors
//   overlap (gaps are allowed). Every violation is a MODEL_FORMAT error naming the file, the tensor and the rule.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace pixelllm::core {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  int64_t numel = 0;
  uint64_t begin = 0;  // byte offsets inside the data section
  uint64_t end = 0;
};

class SafeTensors {
 public:
  static constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // same bound as the reference library

  // Opens, maps and validates `path`: MODEL_NOT_FOUND when it cannot be opened, MODEL_FORMAT when invalid.
  static std::shared_ptr<SafeTensors> open(const std::string& path);
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;

  const std::string& path() const noexcept { return path_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // MODEL_FORMAT "missing tensor" when absent
  std::vector<std::string> names() const;                   // sorted
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  size_t size() const noexcept { return tensors_.size(); }

  // Float32 copy in an owning 64-byte aligned Tensor (converting F16/BF16). CONFIG_MISMATCH when the stored
  // shape differs from `expected_shape`; MODEL_FORMAT when the tensor is missing.
  Tensor get(const std::string& name, const Shape& expected_shape) const;
  Tensor get(const std::string& name) const;  // any shape
  // Zero-copy view into the mapping (F32 only, 4-byte aligned data; otherwise MODEL_FORMAT); keeps the file mapped.
  Tensor view(const std::string& name, const Shape& expected_shape) const;
  // Raw bytes of a tensor inside the mapping.
  const unsigned char* raw(const std::string& name) const;

 private:
  SafeTensors() = default;
  void parse_header(uint64_t header_len);

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const unsigned char* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafeTensors> self_;
};

}  // namespace pixelllm::core
