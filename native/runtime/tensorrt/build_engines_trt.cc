// runtime/build_engines.h with TensorRT: every group's plan through TrtModel (PlanStore), in plan_groups() order.
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/json.h"
#include "runtime/build_engines.h"
#include "runtime/tensorrt/cuda_util.h"
#include "runtime/tensorrt/trt_model.h"

namespace pixelllm::runtime {

using core::ErrorCode;

bool tensorrt_identity(PlanIdentity* identity, std::string* reason) noexcept {
  *identity = PlanIdentity();
  try {
    const TensorRtProbe probe = probe_tensorrt();
    if (!probe.available) {
      *reason = probe.reason;
      return false;
    }
    trt::DeviceInfo dev;
    if (!trt::query_device(&dev, reason)) return false;
    *identity = trt::runtime_identity(dev);
    return true;
  } catch (const std::exception& e) {
    *reason = e.what();
    return false;
  }
}

EngineBuildResult build_tensorrt_engines(const std::string& model_dir, bool require_fp16,
                                         const EngineBuildProgress& progress) {
  trt::DeviceInfo dev;
  std::string reason;
  const TensorRtProbe probe = probe_tensorrt();
  if (!probe.available) core::fail(ErrorCode::BackendUnavailable, "build-engines: " + probe.reason);
  if (!trt::query_device(&dev, &reason)) core::fail(ErrorCode::BackendUnavailable, "build-engines: " + reason);
  trt::cuda_check(cudaSetDevice(dev.device), "cudaSetDevice");
  const core::Json config = core::parse_json_file(model_dir + "/config.json");
  const TensorRtOptions options = tensorrt_options_for(config, /*prefer_fp16=*/true);

  std::vector<std::string> groups;
  for (const std::string& g : plan_groups()) {
    const std::string file = plan_onnx_file(model_dir, g, /*prefer_fp16=*/true);
    if (file.empty()) continue;
    if (require_fp16 && plan_precision(plan_key(file)) != "fp16")
      core::fail(ErrorCode::ModelNotFound, "build-engines --fp16: " + model_dir + "/onnx/" + g +
                                               ".fp16.onnx is missing (python -m pixelllm_ref.export_onnx " +
                                               model_dir + " " + model_dir + "/onnx --fp16)");
    groups.push_back(g);
  }
  if (groups.empty())
    core::fail(ErrorCode::ModelNotFound, "build-engines: " + model_dir + "/onnx has no graphs (python -m " +
                                             "pixelllm_ref.export_onnx " + model_dir + " " + model_dir + "/onnx)");

  trt::TrtModel model(model_dir, options, dev);
  EngineBuildResult result;
  result.identity = trt::runtime_identity(dev);
  result.plan_dir = model_dir + "/trt/" + plan_dir_name(result.identity);
  const int total = static_cast<int>(groups.size());
  for (int i = 0; i < total; ++i) {
    if (progress) progress(i, total, groups[i], false);
    trt::PlanOutcome o;
    model.engine(groups[i], &o);   // builds or loads, then deserializes: a plan TensorRT refuses is rebuilt
    result.rows.push_back({o.key, o.group, o.precision, o.built, o.reason, o.seconds, o.plan_bytes});
    if (progress) progress(i, total, groups[i], true);
  }
  return result;
}

}  // namespace pixelllm::runtime
