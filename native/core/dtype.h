// Storage dtypes of weight files and their conversion to the float32 the CPU backend computes in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace pixelllm::core {

enum class DType { F32, F16, BF16 };

size_t dtype_size(DType dtype);         // bytes per element
const char* dtype_name(DType dtype);    // safetensors spelling: "F32", "F16", "BF16"
std::optional<DType> dtype_from_name(const std::string& name);  // nullopt for anything else

float f16_to_f32(uint16_t h);   // IEEE half, subnormals/inf/nan preserved
float bf16_to_f32(uint16_t b);  // bfloat16 (upper 16 bits of a float)
uint16_t f32_to_f16(float f);   // round to nearest even (for writing test data and exports)
uint16_t f32_to_bf16(float f);  // round to nearest even, NaN stays NaN

// Converts n elements of `dtype` at `src` (any alignment, little-endian) to float32 at `dst`.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t n);

}  // namespace pixelllm::core
