// `pixelllm build-engines`: builds (or reuses) every TensorRT plan of a model directory ahead of the first load,
// and the running GPU / TensorRT identity that `build-engines --check` compares recorded plans with. In a build
// without TensorRT both say so (BACKEND_UNAVAILABLE / false) instead of failing to link.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/plan_manifest.h"

namespace pixelllm::runtime {

// How to get a build that has the TensorRT backend (the message of BACKEND_UNAVAILABLE in a CPU-only build).
inline constexpr const char* kHowToBuildTensorRt =
    "this build has no TensorRT backend; rebuild the addon with TensorRT 10 or 11 and the CUDA toolkit: "
    "TENSORRT_ROOT=/path/to/TensorRT npx cmake-js build --CDPIXELLLM_TENSORRT=ON (see docs/tensorrt.md)";

struct EngineBuildRow {
  std::string key, group, precision;   // key = ONNX stem ("decoder_step.fp16")
  bool built = false;                  // false = an up-to-date plan was reused
  std::string reason;                  // why it was built ("no manifest.json", "onnx/... changed", ...)
  double seconds = 0;
  uint64_t plan_bytes = 0;
};

struct EngineBuildResult {
  PlanIdentity identity;               // the GPU / TensorRT the plans are for
  std::string plan_dir;                // model_dir/trt/<gpu>-<version>
  std::vector<EngineBuildRow> rows;
};

// Called before each group (done = false) and after it (done = true, with its row).
using EngineBuildProgress = std::function<void(int index, int total, const std::string& group, bool done)>;

// Builds every group that has an ONNX export, with the options PixelLLM.load uses (so the load reuses them).
// require_fp16: every group must have onnx/<group>.fp16.onnx (MODEL_NOT_FOUND otherwise). Throws
// BACKEND_UNAVAILABLE (no TensorRT in this build, no GPU), MODEL_NOT_FOUND (no config.json / no ONNX),
// MODEL_FORMAT / ENGINE_MISMATCH from the builds.
EngineBuildResult build_tensorrt_engines(const std::string& model_dir, bool require_fp16,
                                         const EngineBuildProgress& progress);

// The running GPU and TensorRT library; false with the reason when there is none (no TensorRT in this build, no
// GPU or driver). Never throws.
bool tensorrt_identity(PlanIdentity* identity, std::string* reason) noexcept;

}  // namespace pixelllm::runtime
