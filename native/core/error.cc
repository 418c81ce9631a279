#include "core/error.h"

namespace pixelllm::core {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::InvalidImage: return "INVALID_IMAGE";
    case ErrorCode::InvalidBox: return "INVALID_BOX";
    case ErrorCode::InvalidText: return "INVALID_TEXT";
    case ErrorCode::ModelNotFound: return "MODEL_NOT_FOUND";
    case ErrorCode::ModelFormat: return "MODEL_FORMAT";
    case ErrorCode::ConfigMismatch: return "CONFIG_MISMATCH";
    case ErrorCode::TokenizerMismatch: return "TOKENIZER_MISMATCH";
    case ErrorCode::BackendUnavailable: return "BACKEND_UNAVAILABLE";
    case ErrorCode::EngineMismatch: return "ENGINE_MISMATCH";
    case ErrorCode::OutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::LimitExceeded: return "LIMIT_EXCEEDED";
    case ErrorCode::Aborted: return "ABORTED";
    case ErrorCode::Disposed: return "DISPOSED";
    case ErrorCode::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

Error::Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace pixelllm::core
