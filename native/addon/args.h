// Argument validation for every value that crosses from JS into C++. Each helper throws a JS Error with a code
// (INVALID_ARGUMENT unless stated) and a message naming the argument; nothing unvalidated reaches the pipeline.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace pixelllm::addon::args {

// Upper bounds checked here, before the pipeline applies the model's own limits (LIMIT_EXCEEDED).
constexpr int kMaxImageSide = 1 << 15;
constexpr size_t kMaxTokens = 4096;
constexpr int kMaxThreads = 1024;
constexpr int kMaxBeams = 16;

std::string String(const Napi::Value& value, const char* name);

// `value` must be a finite number with an integer value in [min, max].
int Int(const Napi::Value& value, const char* name, int min, int max);

// An options object: undefined/null -> empty object; anything else but a plain object -> error.
Napi::Object Options(const Napi::Value& value, const char* name);

// Optional fields of an options object (undefined -> default).
int OptionalInt(const Napi::Object& options, const char* key, int fallback, int min, int max);
float OptionalFloat(const Napi::Object& options, const char* key, float fallback, float min, float max);
bool OptionalBool(const Napi::Object& options, const char* key, bool fallback);
std::string OptionalString(const Napi::Object& options, const char* key, const std::string& fallback);
// An optional string that must be one of `choices` (INVALID_ARGUMENT "<key> must be 'a', 'b' or 'c', got '...'").
std::string OptionalChoice(const Napi::Object& options, const char* key, const std::string& fallback,
                           const std::vector<std::string>& choices);

// [x0, y0, x1, y1] (Array or Float32Array/Float64Array) of finite numbers with 0 <= x0 < x1 <= width and
// 0 <= y0 < y1 <= height. Throws INVALID_BOX.
pipeline::Box Box(const Napi::Value& value, const char* name, int width, int height);

// Int32Array / Uint32Array / Array of integers in [0, vocab_size), at most kMaxTokens. Throws INVALID_TEXT.
std::vector<int32_t> Tokens(const Napi::Value& value, const char* name, int vocab_size);

// A Buffer / Uint8Array / Uint8ClampedArray; returns its bytes (no copy).
struct Bytes {
  const uint8_t* data = nullptr;
  size_t length = 0;
};
Bytes ByteView(const Napi::Value& value, const char* name);

}  // namespace pixelllm::addon::args
