// Features: the JS handle on encoded image features (pipeline::ImageFeatures), created only by Model.encode.
// It remembers which model made it and the original image size (used to validate boxes), and reports the native
// memory it keeps alive to V8 (AdjustExternalMemory: + on creation, - on dispose() or finalization) so that the
// garbage collector feels the pressure of dropped, undisposed features.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "pipeline/pipeline.h"

namespace pixelllm::addon {

class Features : public Napi::ObjectWrap<Features> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Features(const Napi::CallbackInfo& info);
  ~Features() override;

  static Napi::Object Create(Napi::Env env, std::shared_ptr<const pipeline::ImageFeatures> features, uint64_t model_id,
                             int width, int height);

  // The Features behind `value`; throws INVALID_ARGUMENT when it is not a Features of model `model_id`,
  // DISPOSED when its dispose() was called.
  static Features& From(const Napi::Value& value, uint64_t model_id);

  const std::shared_ptr<const pipeline::ImageFeatures>& features() const { return features_; }
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  static Napi::Value ReportedBytes(const Napi::CallbackInfo& info);
  Napi::Value Width(const Napi::CallbackInfo& info);
  Napi::Value Height(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  void Release();  // drops features_ and takes back the bytes reported to V8

  napi_env env_ = nullptr;
  int64_t external_bytes_ = 0;  // reported to V8 and not yet taken back

  std::shared_ptr<const pipeline::ImageFeatures> features_;
  uint64_t model_id_ = 0;
  int width_ = 0, height_ = 0;
};

}  // namespace pixelllm::addon
