// Error type shared by everything below native/addon: a std::runtime_error with a stable code.
// The code names are the contract with TypeScript (PixelLLMError.code); never rename them.
#pragma once

#include <stdexcept>
#include <string>

namespace pixelllm::core {

enum class ErrorCode {
  InvalidArgument,
  InvalidImage,
  InvalidBox,
  InvalidText,
  ModelNotFound,
  ModelFormat,
  ConfigMismatch,
  TokenizerMismatch,
  BackendUnavailable,
  EngineMismatch,
  OutOfMemory,
  LimitExceeded,
  Aborted,
  Disposed,
  Internal,
};

// Stable string of a code, e.g. "MODEL_FORMAT".
const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const noexcept { return code_; }
  const char* code_name() const noexcept { return error_code_name(code_); }

 private:
  ErrorCode code_;
};

[[noreturn]] void fail(ErrorCode code, const std::string& message);

}  // namespace pixelllm::core

// Throws core::Error(code, message) when cond is false. `message` may be any expression yielding std::string.
#define PIXELLLM_CHECK(cond, code, message)                                   \
  do {                                                                        \
    if (!(cond)) ::pixelllm::core::fail(::pixelllm::core::ErrorCode::code, (message)); \
  } while (0)
