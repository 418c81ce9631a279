// Error mapping between C++ exceptions and JS: every error that reaches JS is an Error with a stable `code`
// (the names of pixelllm::core::ErrorCode, e.g. "INVALID_BOX"); lib/errors.ts turns it into a PixelLLMError.
#pragma once

#include <napi.h>

#include <string>

namespace pixelllm::addon {

// A failure captured on a worker thread, to be turned into a JS error on the main thread.
struct Failure {
  std::string code;
  std::string message;
};

// Call inside a `catch (...)` block: classifies the in-flight exception (core::Error -> its code,
// std::bad_alloc -> OUT_OF_MEMORY, anything else -> INTERNAL).
Failure CaptureCurrentException();

// A JS Error object with `code` set.
Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message);

// Throws MakeError(...) as a C++ exception (node-addon-api turns it into a pending JS exception).
[[noreturn]] void Throw(Napi::Env env, const char* code, const std::string& message);

// All codes, in core::ErrorCode order (exported to JS as `errorCodes`).
Napi::Array ErrorCodes(Napi::Env env);

}  // namespace pixelllm::addon
