// Builds a serialized TensorRT plan from one of the reference's ONNX graphs: nvonnxparser into a strongly typed
// network (precision = the types written in the ONNX; no FP16/INT8 builder flags, which TensorRT 11 removed), one
// optimization profile over the dynamic axes, a persistent timing cache, builder optimization level and workspace
// memory pool limit.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pixelllm::runtime::trt {

struct DimRange {
  std::vector<int64_t> min, opt, max;
};

// Given an input name and its ONNX dims (-1 = dynamic), the profile range of that input.
using ProfileFn = std::function<DimRange(const std::string& input, const std::vector<int64_t>& dims)>;

struct BuildOptions {
  int optimization_level = 3;
  size_t workspace_bytes = size_t(1) << 30;
  std::string timing_cache_path;   // read when present, rewritten after the build; empty = no cache
};

// The plan bytes. MODEL_FORMAT when the ONNX does not parse (with the parser's errors), ENGINE_MISMATCH when the
// build fails, BACKEND_UNAVAILABLE when the builder cannot be created.
std::string build_plan(const std::string& onnx_path, const BuildOptions& options, const ProfileFn& profile);

}  // namespace pixelllm::runtime::trt
