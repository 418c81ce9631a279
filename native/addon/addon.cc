// Module init: the only N-API entry point. Exports
//   { contractVersion, napiVersion, errorCodes: string[], Model, Features, CancelToken, buildEngines,
//     inspectEngines (addon/engines.h) }
#include "addon/addon.h"

#include "addon/cancel.h"
#include "addon/engines.h"
#include "addon/errors.h"
#include "addon/features.h"
#include "addon/model.h"

namespace pixelllm::addon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted by node-addon-api when the environment is torn down

  Napi::Function model = Model::Define(env);
  Napi::Function features = Features::Define(env);
  Napi::Function cancel = CancelToken::Define(env);
  data->model_ctor = Napi::Persistent(model);
  data->features_ctor = Napi::Persistent(features);
  data->cancel_ctor = Napi::Persistent(cancel);

  exports.Set("contractVersion", Napi::Number::New(env, kContractVersion));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  exports.Set("errorCodes", ErrorCodes(env));
  exports.Set("Model", model);
  exports.Set("Features", features);
  exports.Set("CancelToken", cancel);
  exports.Set("buildEngines", Napi::Function::New(env, BuildEngines, "buildEngines"));
  exports.Set("inspectEngines", Napi::Function::New(env, InspectEngines, "inspectEngines"));
  return exports;
}

}  // namespace pixelllm::addon

static Napi::Object InitPixelLLM(Napi::Env env, Napi::Object exports) { return pixelllm::addon::Init(env, exports); }

NODE_API_MODULE(pixelllm, InitPixelLLM)
