// CancelToken: a JS-visible handle on an atomic flag that native workers poll. lib/model.ts creates one per call
// and sets it from the call's AbortSignal.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

namespace pixelllm::addon {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CancelToken(const Napi::CallbackInfo& info);

  // The flag of `value` when it is a CancelToken; a fresh, never-set flag when undefined/null; else throws.
  static CancelFlag FlagOf(const Napi::Value& value, const char* name);

 private:
  void Cancel(const Napi::CallbackInfo& info);
  Napi::Value Cancelled(const Napi::CallbackInfo& info);

  CancelFlag flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace pixelllm::addon
