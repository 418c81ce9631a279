// Serialized plans of one model directory: model_dir/trt/<gpu-name>-<tensorrt-version>/<key>.plan + manifest.json
// (format and decision rules: runtime/plan_manifest.h, TensorRT-independent and unit-tested). A plan is loaded only
// when every recorded fact equals the running GPU, TensorRT library and files; otherwise it is rebuilt (never
// loaded blindly) and the manifest rewritten.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "runtime/plan_manifest.h"
#include "runtime/tensorrt/cuda_util.h"

namespace pixelllm::runtime::trt {

// The running GPU and the loaded TensorRT library ("10.16.1" from getInferLibVersion()).
PlanIdentity runtime_identity(const DeviceInfo& device);

// What load_or_build did for one plan (the rows of `pixelllm build-engines`).
struct PlanOutcome {
  std::string key, group, precision;
  bool built = false;        // false = reused from disk
  std::string reason;        // why it was (re)built
  double seconds = 0;        // build or load time
  uint64_t plan_bytes = 0;
};

class PlanStore {
 public:
  PlanStore(const std::string& model_dir, PlanIdentity identity);
  const std::string& dir() const noexcept { return dir_; }
  std::string timing_cache_path() const { return dir_ + "/timing.cache"; }

  // The plan bytes for onnx_path (key = its file stem): loaded when plan_manifest's decide_plan says reusable,
  // else built with `build` and recorded. `outcome` (optional) says which and why.
  std::string load_or_build(const std::string& group, const std::string& onnx_path, const std::string& config_hash,
                            const std::function<std::string()>& build, PlanOutcome* outcome = nullptr);
  // Marks a plan TensorRT refused at deserialization as stale (the next load_or_build rebuilds it).
  void invalidate(const std::string& key);

 private:
  std::string dir_;
  PlanIdentity id_;
  std::mutex mu_;
};

}  // namespace pixelllm::runtime::trt
