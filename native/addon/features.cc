#include "addon/features.h"

#include <atomic>

#include "addon/addon.h"
#include "addon/errors.h"

namespace pixelllm::addon {

namespace {
// Sum of the external_bytes_ of every Features (moves with each AdjustExternalMemory call below).
std::atomic<int64_t> g_reported_bytes{0};

// Carries the native state into the constructor; JS code cannot make one, so `new Features()` from JS fails.
struct Init {
  std::shared_ptr<const pipeline::ImageFeatures> features;
  uint64_t model_id;
  int width, height;
};
}  // namespace

Napi::Function Features::Define(Napi::Env env) {
  return DefineClass(env, "Features",
                     {InstanceAccessor<&Features::Width>("width"), InstanceAccessor<&Features::Height>("height"),
                      InstanceAccessor<&Features::Disposed>("disposed"), InstanceMethod<&Features::Dispose>("dispose"),
                      StaticMethod<&Features::ReportedBytes>("reportedBytes")});
}

Features::Features(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Features>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Throw(info.Env(), "INVALID_ARGUMENT", "Features are created by Model.encode(), not by `new`");
  }
  Init* init = info[0].As<Napi::External<Init>>().Data();
  features_ = std::move(init->features);
  model_id_ = init->model_id;
  width_ = init->width;
  height_ = init->height;
  env_ = info.Env();
  if (features_) {
    external_bytes_ = static_cast<int64_t>(pipeline::feature_bytes(*features_));
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_bytes_);
    g_reported_bytes += external_bytes_;
  }
}

// Runs in the object's finalizer (basic-env work only: AdjustExternalMemory is allowed there).
Features::~Features() { Release(); }

void Features::Release() {
  features_.reset();
  if (external_bytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(Napi::BasicEnv(env_), -external_bytes_);
    g_reported_bytes -= external_bytes_;
    external_bytes_ = 0;
  }
}

Napi::Object Features::Create(Napi::Env env, std::shared_ptr<const pipeline::ImageFeatures> features,
                              uint64_t model_id, int width, int height) {
  Init init{std::move(features), model_id, width, height};
  return Data(env).features_ctor.New({Napi::External<Init>::New(env, &init)});
}

Features& Features::From(const Napi::Value& value, uint64_t model_id) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Data(env).features_ctor.Value())) {
    Throw(env, "INVALID_ARGUMENT", "features must come from Model.encode()");
  }
  Features* f = Unwrap(value.As<Napi::Object>());
  if (f->model_id_ != model_id) Throw(env, "INVALID_ARGUMENT", "features were encoded by another model");
  if (!f->features_) Throw(env, "DISPOSED", "features were disposed");
  return *f;
}

// Diagnostics/tests: the bytes that live Features of this process have reported to V8 and not yet taken back.
Napi::Value Features::ReportedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_reported_bytes.load()));
}

Napi::Value Features::Width(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), width_); }
Napi::Value Features::Height(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), height_); }
Napi::Value Features::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !features_); }

// In-flight calls hold their own reference; memory goes when the last one finishes (V8 is told at once).
void Features::Dispose(const Napi::CallbackInfo&) { Release(); }

}  // namespace pixelllm::addon
