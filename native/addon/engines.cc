#include "addon/engines.h"

#include <optional>
#include <string>
#include <vector>

#include "addon/args.h"
#include "addon/errors.h"
#include "addon/workers.h"
#include "runtime/build_engines.h"
#include "runtime/plan_manifest.h"

namespace pixelllm::addon {

namespace {

struct BuildProgress {
  int index = 0, total = 0;
  std::string group;
  bool done = false;
};

Napi::Object IdentityObject(Napi::Env env, const runtime::PlanIdentity& id) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("gpu", id.gpu_name);
  o.Set("computeCapability", id.compute_capability);
  o.Set("tensorrtVersion", id.tensorrt_version);
  return o;
}

class BuildEnginesWorker final : public Napi::AsyncProgressQueueWorker<BuildProgress> {
 public:
  BuildEnginesWorker(Napi::Env env, std::string dir, bool fp16, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<BuildProgress>(env, "pixelllm.buildEngines"),
        deferred_(Napi::Promise::Deferred::New(env)),
        dir_(std::move(dir)),
        fp16_(fp16) {
    if (!on_progress.IsEmpty()) on_progress_ = Napi::Persistent(on_progress);
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  void Execute(const ExecutionProgress& progress) override {
    try {
      result_ = runtime::build_tensorrt_engines(dir_, fp16_, [&](int i, int n, const std::string& g, bool done) {
        BuildProgress p{i, n, g, done};
        progress.Send(&p, 1);
      });
    } catch (...) {
      failure_ = CaptureCurrentException();
    }
  }
  void OnProgress(const BuildProgress* data, size_t count) override {
    if (on_progress_.IsEmpty()) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (size_t i = 0; i < count; ++i) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("index", data[i].index);
      e.Set("total", data[i].total);
      e.Set("group", data[i].group);
      e.Set("done", data[i].done);
      try {
        on_progress_.Call({e});
      } catch (const Napi::Error&) {   // a throwing callback must not break the build: ignore it
      }
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failure_) {
      deferred_.Reject(MakeError(env, failure_->code, failure_->message).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("identity", IdentityObject(env, result_.identity));
    out.Set("planDir", result_.plan_dir);
    Napi::Array rows = Napi::Array::New(env, result_.rows.size());
    for (size_t i = 0; i < result_.rows.size(); ++i) {
      const runtime::EngineBuildRow& r = result_.rows[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("key", r.key);
      o.Set("group", r.group);
      o.Set("precision", r.precision);
      o.Set("built", r.built);
      o.Set("reason", r.reason);
      o.Set("seconds", r.seconds);
      o.Set("planBytes", static_cast<double>(r.plan_bytes));
      rows.Set(static_cast<uint32_t>(i), o);
    }
    out.Set("rows", rows);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

  Napi::Promise::Deferred deferred_;
  std::string dir_;
  bool fp16_;
  Napi::FunctionReference on_progress_;
  runtime::EngineBuildResult result_;
  std::optional<Failure> failure_;
};

class InspectEnginesWorker final : public PromiseWorker {
 public:
  InspectEnginesWorker(Napi::Env env, std::string dir, runtime::PlanIdentity target)
      : PromiseWorker(env, "pixelllm.inspectEngines"), dir_(std::move(dir)), target_(std::move(target)) {}

 private:
  void Run() override {
    if (!target_.known() && !runtime::tensorrt_identity(&target_, &target_reason_)) target_ = {};
    rows_ = runtime::inspect_plans(dir_, target_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("target", IdentityObject(env, target_));
    out.Set("targetKnown", target_.known());
    out.Set("targetReason", target_reason_);
    Napi::Array rows = Napi::Array::New(env, rows_.size());
    for (size_t i = 0; i < rows_.size(); ++i) {
      const runtime::PlanReport& r = rows_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("dir", r.dir);
      o.Set("key", r.key);
      o.Set("group", r.group);
      o.Set("precision", r.precision);
      o.Set("built", IdentityObject(env, r.built));
      o.Set("reusable", r.reusable);
      o.Set("reason", r.reason);
      o.Set("planBytes", static_cast<double>(r.plan_bytes));
      o.Set("expectedOnnxSha256", r.expected_onnx_sha256);
      o.Set("expectedConfigSha256", r.expected_config_sha256);
      rows.Set(static_cast<uint32_t>(i), o);
    }
    out.Set("rows", rows);
    return out;
  }

  std::string dir_;
  runtime::PlanIdentity target_;
  std::string target_reason_;
  std::vector<runtime::PlanReport> rows_;
};

}  // namespace

Napi::Value BuildEngines(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = args::String(info[0], "dir");
  if (dir.empty()) Throw(env, "INVALID_ARGUMENT", "dir must not be empty");
  Napi::Object options = args::Options(info[1], "options");
  const bool fp16 = args::OptionalBool(options, "fp16", false);
  Napi::Function on_progress;
  if (options.Has("onProgress") && !options.Get("onProgress").IsUndefined()) {
    if (!options.Get("onProgress").IsFunction()) Throw(env, "INVALID_ARGUMENT", "options.onProgress must be a function");
    on_progress = options.Get("onProgress").As<Napi::Function>();
  }
  auto* worker = new BuildEnginesWorker(env, std::move(dir), fp16, on_progress);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value InspectEngines(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = args::String(info[0], "dir");
  if (dir.empty()) Throw(env, "INVALID_ARGUMENT", "dir must not be empty");
  Napi::Object options = args::Options(info[1], "options");
  runtime::PlanIdentity target;
  target.gpu_name = args::OptionalString(options, "gpu", "");
  target.compute_capability = args::OptionalString(options, "computeCapability", "");
  target.tensorrt_version = args::OptionalString(options, "tensorrtVersion", "");
  const int given = !target.gpu_name.empty() + !target.compute_capability.empty() + !target.tensorrt_version.empty();
  if (given != 0 && given != 3)
    Throw(env, "INVALID_ARGUMENT", "give all of gpu, computeCapability and tensorrtVersion, or none of them");
  return (new InspectEnginesWorker(env, std::move(dir), std::move(target)))->Start();
}

}  // namespace pixelllm::addon
