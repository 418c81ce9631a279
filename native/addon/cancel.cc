#include "addon/cancel.h"

#include "addon/addon.h"
#include "addon/errors.h"

namespace pixelllm::addon {

Napi::Function CancelToken::Define(Napi::Env env) {
  return DefineClass(env, "CancelToken",
                     {InstanceMethod<&CancelToken::Cancel>("cancel"),
                      InstanceAccessor<&CancelToken::Cancelled>("cancelled")});
}

CancelToken::CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {}

void CancelToken::Cancel(const Napi::CallbackInfo&) { flag_->store(true); }

Napi::Value CancelToken::Cancelled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flag_->load());
}

CancelFlag CancelToken::FlagOf(const Napi::Value& value, const char* name) {
  if (value.IsUndefined() || value.IsNull()) return std::make_shared<std::atomic<bool>>(false);
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Data(env).cancel_ctor.Value())) {
    Throw(env, "INVALID_ARGUMENT", std::string(name) + " must be a CancelToken");
  }
  return Unwrap(value.As<Napi::Object>())->flag_;
}

}  // namespace pixelllm::addon
