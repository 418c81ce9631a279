// SHA-256 (FIPS 180-4) of files and strings, for the TensorRT plan manifest (ONNX, config and plan hashes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pixelllm::runtime {

std::string sha256_hex(const void* data, size_t size);
std::string sha256_hex(const std::string& text);
// MODEL_NOT_FOUND when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace pixelllm::runtime
