// Async workers: every pipeline call except generation runs on the libuv thread pool, never on the event loop, and settles a
// Promise. Each worker holds its own std::shared_ptr to the pipeline and the features, so Model.dispose() and
// Features.dispose() never pull memory from under a call in flight.
#pragma once

#include <napi.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "addon/cancel.h"
#include "addon/errors.h"
#include "pipeline/pipeline.h"

namespace pixelllm::addon {

// A Napi::AsyncWorker that settles a Promise: Run() on a worker thread (exceptions become a rejected Promise
// with their code), Result() on the main thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  Napi::Promise Start();

 protected:
  PromiseWorker(Napi::Env env, const char* name);
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Execute() final;
  void OnOK() final;
  void OnError(const Napi::Error& error) final;

  Napi::Promise::Deferred deferred_;
  std::optional<Failure> failure_;
};

class LoadWorker final : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string dir, pipeline::LoadOptions options);

 private:
  void Run() override;
  Napi::Value Result(Napi::Env env) override;

  std::string dir_;
  pipeline::LoadOptions options_;
  std::shared_ptr<pipeline::Pipeline> pipeline_;
};

class EncodeWorker final : public PromiseWorker {
 public:
  // `pixels` (a Uint8Array) is kept alive and read in place until the worker finishes.
  EncodeWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline, uint64_t model_id, Napi::Value pixels,
               pipeline::Image image);

 private:
  void Run() override;
  Napi::Value Result(Napi::Env env) override;

  std::shared_ptr<pipeline::Pipeline> pipeline_;
  uint64_t model_id_;
  Napi::Reference<Napi::Value> pixels_;
  pipeline::Image image_;
  std::shared_ptr<const pipeline::ImageFeatures> features_;
};

class SegmentWorker final : public PromiseWorker {
 public:
  SegmentWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
                std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::Box box, CancelFlag cancel);

 private:
  void Run() override;
  Napi::Value Result(Napi::Env env) override;

  std::shared_ptr<pipeline::Pipeline> pipeline_;
  std::shared_ptr<const pipeline::ImageFeatures> features_;
  pipeline::Box box_;
  CancelFlag cancel_;
  pipeline::MaskResult result_;
};

class DenseWorker final : public PromiseWorker {
 public:
  DenseWorker(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
              std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::DenseOptions options,
              CancelFlag cancel);

 private:
  void Run() override;
  Napi::Value Result(Napi::Env env) override;

  std::shared_ptr<pipeline::Pipeline> pipeline_;
  std::shared_ptr<const pipeline::ImageFeatures> features_;
  pipeline::DenseOptions options_;
  CancelFlag cancel_;
  std::vector<pipeline::DenseItem> result_;
};

// Caption / refer / describe: addon/generate_call.h (decode threads, not the libuv pool).

}  // namespace pixelllm::addon
