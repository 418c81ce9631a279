#include "addon/errors.h"

#include <exception>
#include <new>

#include "core/error.h"

namespace pixelllm::addon {

Failure CaptureCurrentException() {
  try {
    throw;
  } catch (const core::Error& e) {
    return {e.code_name(), e.what()};
  } catch (const std::bad_alloc&) {
    return {"OUT_OF_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    return {"INTERNAL", std::string("internal error: ") + e.what()};
  } catch (...) {
    return {"INTERNAL", "internal error: unknown exception"};
  }
}

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

void Throw(Napi::Env env, const char* code, const std::string& message) { throw MakeError(env, code, message); }

Napi::Array ErrorCodes(Napi::Env env) {
  Napi::Array codes = Napi::Array::New(env);
  uint32_t i = 0;
  for (int c = static_cast<int>(core::ErrorCode::InvalidArgument); c <= static_cast<int>(core::ErrorCode::Internal);
       ++c) {
    codes.Set(i++, Napi::String::New(env, core::error_code_name(static_cast<core::ErrorCode>(c))));
  }
  return codes;
}

}  // namespace pixelllm::addon
