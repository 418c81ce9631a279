#include "addon/features.h"

#include "addon/addon.h"
#include "addon/errors.h"

namespace pixelllm::addon {

namespace {
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
                      InstanceAccessor<&Features::Disposed>("disposed"), InstanceMethod<&Features::Dispose>("dispose")});
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

Napi::Value Features::Width(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), width_); }
Napi::Value Features::Height(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), height_); }
Napi::Value Features::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !features_); }

// In-flight calls hold their own reference; memory goes when the last one finishes.
void Features::Dispose(const Napi::CallbackInfo&) { features_.reset(); }

}  // namespace pixelllm::addon
