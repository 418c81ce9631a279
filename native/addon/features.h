// Features: the JS handle on encoded image features (pipeline::ImageFeatures), created only by Model.encode.
// It remembers which model made it and the original image size (used to validate boxes).
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

  static Napi::Object Create(Napi::Env env, std::shared_ptr<const pipeline::ImageFeatures> features, uint64_t model_id,
                             int width, int height);

  // The Features behind `value`; throws INVALID_ARGUMENT when it is not a Features of model `model_id`,
  // DISPOSED when its dispose() was called.
  static Features& From(const Napi::Value& value, uint64_t model_id);

  const std::shared_ptr<const pipeline::ImageFeatures>& features() const { return features_; }
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  Napi::Value Width(const Napi::CallbackInfo& info);
  Napi::Value Height(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<const pipeline::ImageFeatures> features_;
  uint64_t model_id_ = 0;
  int width_ = 0, height_ = 0;
};

}  // namespace pixelllm::addon
