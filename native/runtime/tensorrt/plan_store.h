// Serialized plans of one model directory: model_dir/trt/<gpu-name>-<tensorrt-version>/<group>.plan + manifest.json
// (TensorRT version, compute capability, GPU name, and per plan the SHA-256 of its ONNX, of its build
// configuration and of the plan file). A plan is loaded only when every recorded fact equals the running GPU,
// TensorRT library and files; otherwise it is rebuilt (never loaded blindly) and the manifest rewritten.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "runtime/tensorrt/cuda_util.h"

namespace pixelllm::runtime::trt {

struct RuntimeIdentity {
  std::string gpu_name;
  std::string compute_capability;   // "9.0"
  std::string tensorrt_version;     // of the loaded library, "10.16.1"
};

RuntimeIdentity runtime_identity(const DeviceInfo& device);
std::string sanitize_name(const std::string& s);   // [A-Za-z0-9._-], other characters -> '_'

class PlanStore {
 public:
  PlanStore(const std::string& model_dir, RuntimeIdentity identity);
  const std::string& dir() const noexcept { return dir_; }
  std::string timing_cache_path() const { return dir_ + "/timing.cache"; }

  // The plan bytes of `group`: loaded when its manifest entry matches (ONNX hash, config hash, plan hash and the
  // runtime identity), else built with `build` and recorded. `why` (optional) receives the rebuild reason.
  std::string load_or_build(const std::string& group, const std::string& onnx_path, const std::string& config_hash,
                            const std::function<std::string()>& build, std::string* why = nullptr);
  // Marks a plan TensorRT refused at deserialization as stale (the next load_or_build rebuilds it).
  void invalidate(const std::string& group);

 private:
  std::string dir_;
  RuntimeIdentity id_;
  std::mutex mu_;
};

}  // namespace pixelllm::runtime::trt
