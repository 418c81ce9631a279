// The CPU-only side of runtime/build_engines.h (with TensorRT: runtime/tensorrt/build_engines_trt.cc).
#include "runtime/build_engines.h"

#if !defined(PIXELLLM_HAVE_TENSORRT)

#include "core/error.h"

namespace pixelllm::runtime {

EngineBuildResult build_tensorrt_engines(const std::string&, bool, const EngineBuildProgress&) {
  core::fail(core::ErrorCode::BackendUnavailable, std::string("build-engines: ") + kHowToBuildTensorRt);
}

bool tensorrt_identity(PlanIdentity* identity, std::string* reason) noexcept {
  *identity = PlanIdentity();
  *reason = "this build has no TensorRT backend";
  return false;
}

}  // namespace pixelllm::runtime

#endif
