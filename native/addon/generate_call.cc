#include "addon/generate_call.h"

#include <optional>
#include <utility>

#include "addon/convert.h"
#include "addon/decode_threads.h"
#include "addon/errors.h"
#include "core/error.h"

namespace pixelllm::addon {

namespace {

struct Message {
  bool done = false;
  pipeline::TokenEvent event;
};

struct GenerateCall;
void CallJs(Napi::Env env, Napi::Function, GenerateCall* call, Message* message);
using Tsfn = Napi::TypedThreadSafeFunction<GenerateCall, Message, CallJs>;

// Owned by the thread-safe function (deleted by its finalizer, on the main thread, after the last message).
struct GenerateCall {
  explicit GenerateCall(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_token;
  Napi::Reference<Napi::Value> callback_error;  // the first exception thrown by on_token
  std::shared_ptr<pipeline::Pipeline> pipeline;
  std::shared_ptr<const pipeline::ImageFeatures> features;
  pipeline::GenerateRequest request;
  CancelFlag cancel;
  Tsfn tsfn;
  // Written by the decode thread before its last message, read by the main thread after it.
  std::optional<Failure> failure;
  pipeline::GenerateResult result;

  void Run() {  // decode thread
    try {
      if (cancel->load()) throw core::Error(core::ErrorCode::Aborted, "generation was aborted");
      result = pipeline->generate(
          *features, request,
          [this](const pipeline::TokenEvent& e) {
            Message* m = new Message();
            m->event = e;
            if (tsfn.BlockingCall(m) != napi_ok) delete m;  // the environment is closing
          },
          *cancel);
    } catch (...) {
      failure = CaptureCurrentException();
    }
    Message* done = new Message();
    done->done = true;
    if (tsfn.BlockingCall(done) != napi_ok) delete done;
    tsfn.Release();
  }

  void Settle(Napi::Env env) {  // main thread
    if (!callback_error.IsEmpty()) {
      deferred.Reject(callback_error.Value());
    } else if (failure) {
      deferred.Reject(MakeError(env, failure->code, failure->message).Value());
    } else {
      try {
        deferred.Resolve(GenerateResultToJs(env, std::move(result)));
      } catch (const Napi::Error& e) {
        deferred.Reject(e.Value());
      }
    }
  }
};

void CallJs(Napi::Env env, Napi::Function, GenerateCall* call, Message* message) {
  std::unique_ptr<Message> m(message);
  if (env == nullptr || call == nullptr || m == nullptr) return;  // tearing down
  Napi::HandleScope scope(env);
  if (m->done) {
    call->Settle(env);
    return;
  }
  if (call->on_token.IsEmpty() || !call->callback_error.IsEmpty()) return;
  try {
    call->on_token.Call({EventToJs(env, m->event)});
  } catch (const Napi::Error& e) {
    call->callback_error = Napi::Reference<Napi::Value>::New(e.Value(), 1);
    call->cancel->store(true);  // stop generating: nobody is listening any more
  }
}

}  // namespace

Napi::Promise StartGenerate(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
                            std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::GenerateRequest request,
                            Napi::Value on_token, CancelFlag cancel) {
  auto* call = new GenerateCall(env);
  if (on_token.IsFunction()) call->on_token = Napi::Persistent(on_token.As<Napi::Function>());
  call->pipeline = std::move(pipeline);
  call->features = std::move(features);
  call->request = std::move(request);
  call->cancel = std::move(cancel);
  Napi::Promise promise = call->deferred.Promise();
  call->tsfn = Tsfn::New(env, "pixelllm.generate", 0, 1, call,
                         [](Napi::Env, GenerateCall*, GenerateCall* ctx) { delete ctx; }, call);
  RunOnDecodeThread([call] { call->Run(); });
  return promise;
}

}  // namespace pixelllm::addon
