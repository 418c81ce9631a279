// TensorRT plan management for `pixelllm build-engines` (runtime/build_engines.h, runtime/plan_manifest.h):
//   buildEngines(dir, { fp16?: boolean, onProgress?: (e) => void })
//       -> Promise<{ identity, planDir, rows: [{ key, group, precision, built, reason, seconds, planBytes }] }>
//       onProgress({ index, total, group, done }) on the main thread; rejects BACKEND_UNAVAILABLE in a build
//       without TensorRT (with how to build one).
//   inspectEngines(dir, { gpu?, computeCapability?, tensorrtVersion? })
//       -> Promise<{ target, targetKnown, targetReason, rows: [{ dir, key, group, precision, built, reusable,
//          reason, planBytes, expectedOnnxSha256, expectedConfigSha256 }] }>
//       target = the given identity when all three fields are given, else the running GPU / TensorRT (unknown in
//       a build without TensorRT: every plan is then reported unusable with that reason).
#pragma once

#include <napi.h>

namespace pixelllm::addon {

Napi::Value BuildEngines(const Napi::CallbackInfo& info);
Napi::Value InspectEngines(const Napi::CallbackInfo& info);

}  // namespace pixelllm::addon
