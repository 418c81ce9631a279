#include "addon/workers.h"

#include "addon/convert.h"
#include "addon/features.h"
#include "addon/model.h"
#include "core/error.h"

namespace pixelllm::addon {

// ---- PromiseWorker ----

PromiseWorker::PromiseWorker(Napi::Env env, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Promise PromiseWorker::Start() {
  Napi::Promise promise = deferred_.Promise();
  Queue();
  return promise;
}

void PromiseWorker::Execute() {
  try {
    Run();
  } catch (...) {
    failure_ = CaptureCurrentException();
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (failure_) {
    deferred_.Reject(MakeError(env, failure_->code, failure_->message).Value());
    return;
  }
  try {
    deferred_.Resolve(Result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) { deferred_.Reject(error.Value()); }

// ---- LoadWorker ----

LoadWorker::LoadWorker(Napi::Env env, std::string dir, pipeline::LoadOptions options)
    : PromiseWorker(env, "pixelllm.load"), dir_(std::move(dir)), options_(std::move(options)) {}

void LoadWorker::Run() {
  pipeline_ = pipeline::Pipeline::load(dir_, options_);
  if (!pipeline_) throw core::Error(core::ErrorCode::Internal, "Pipeline::load returned no pipeline");
}

Napi::Value LoadWorker::Result(Napi::Env env) { return Model::Create(env, std::move(pipeline_)); }

// ---- EncodeWorker ----

EncodeWorker::EncodeWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline, uint64_t model_id,
                           Napi::Value pixels, pipeline::Image image)
    : PromiseWorker(env, "pixelllm.encode"),
      pipeline_(std::move(pipeline)),
      model_id_(model_id),
      pixels_(Napi::Persistent(pixels)),
      image_(image) {}

void EncodeWorker::Run() {
  features_ = pipeline_->encode(image_);
  if (!features_) throw core::Error(core::ErrorCode::Internal, "Pipeline::encode returned no features");
}

Napi::Value EncodeWorker::Result(Napi::Env env) {
  return Features::Create(env, std::move(features_), model_id_, image_.width, image_.height);
}

// ---- SegmentWorker ----

SegmentWorker::SegmentWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
                             std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::Box box,
                             CancelFlag cancel)
    : PromiseWorker(env, "pixelllm.segment"),
      pipeline_(std::move(pipeline)),
      features_(std::move(features)),
      box_(box),
      cancel_(std::move(cancel)) {}

void SegmentWorker::Run() {
  if (cancel_->load()) throw core::Error(core::ErrorCode::Aborted, "segment was aborted");
  result_ = pipeline_->segment(*features_, box_, *cancel_);
}

Napi::Value SegmentWorker::Result(Napi::Env env) { return MaskToJs(env, std::move(result_)); }

// ---- DenseWorker ----

DenseWorker::DenseWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
                         std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::DenseOptions options,
                         CancelFlag cancel)
    : PromiseWorker(env, "pixelllm.dense"),
      pipeline_(std::move(pipeline)),
      features_(std::move(features)),
      options_(options),
      cancel_(std::move(cancel)) {}

void DenseWorker::Run() {
  if (cancel_->load()) throw core::Error(core::ErrorCode::Aborted, "dense captioning was aborted");
  result_ = pipeline_->dense(*features_, options_, *cancel_);
}

Napi::Value DenseWorker::Result(Napi::Env env) { return DenseToJs(env, std::move(result_)); }

}  // namespace pixelllm::addon
