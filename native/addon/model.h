// Model: the JS class wrapping one std::shared_ptr<pipeline::Pipeline>.
//   Model.load(dir, { backend, threads, decoderWeights, encoderPrecision }) -> Promise<Model>      (static; `new Model()` from JS is refused)
//   model.info() -> ModelInfo
//   model.encode(rgb: Uint8Array, width, height) -> Promise<Features>
//   model.generate(features, request, onToken?, cancel?) -> Promise<GenerateResult>
//   model.segment(features, box, cancel?) -> Promise<Mask>
//   model.dense(features, options?, cancel?) -> Promise<DenseItem[]>
//   model.dispose(); model.disposed
// Every argument is validated here; shapes of the results are in addon/convert.h.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "pipeline/pipeline.h"

namespace pixelllm::addon {

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Model(const Napi::CallbackInfo& info);

  static Napi::Object Create(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline);

 private:
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value Segment(const Napi::CallbackInfo& info);
  Napi::Value Dense(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  // The pipeline, or throws DISPOSED.
  const std::shared_ptr<pipeline::Pipeline>& Live(Napi::Env env) const;

  std::shared_ptr<pipeline::Pipeline> pipeline_;  // main thread only; workers hold copies
  uint64_t id_ = 0;                               // tags the Features this model makes
};

}  // namespace pixelllm::addon
