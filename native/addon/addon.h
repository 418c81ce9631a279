// Per-environment state of the addon (constructors of the wrapped classes), reachable from any call via
// env.GetInstanceData<AddonData>(). Safe under worker_threads: each Node environment gets its own.
#pragma once

#include <napi.h>

namespace pixelllm::addon {

// Version of the JS <-> native contract; lib/native.ts refuses an addon whose number differs.
constexpr int kContractVersion = 1;

struct AddonData {
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference features_ctor;
  Napi::FunctionReference cancel_ctor;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace pixelllm::addon
