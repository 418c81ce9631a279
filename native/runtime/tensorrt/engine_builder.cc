#include "runtime/tensorrt/engine_builder.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include "core/error.h"
#include "runtime/tensorrt/engine.h"
#include "runtime/tensorrt/logger.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!f) core::fail(ErrorCode::EngineMismatch, "tensorrt: cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) core::fail(ErrorCode::EngineMismatch, "tensorrt: cannot write " + path);
}

uint32_t network_flags() {
#if NV_TENSORRT_MAJOR >= 11
  return 0;   // TensorRT 11 networks are always strongly typed (the flag is deprecated and ignored)
#else
  return 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif
}

}  // namespace

std::string build_plan(const std::string& onnx_path, const BuildOptions& options, const ProfileFn& profile) {
  logger().clear();
  std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
  if (!builder) core::fail(ErrorCode::BackendUnavailable, "tensorrt: createInferBuilder failed: " + logger().last_errors());
  std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(network_flags()));
  if (!network) core::fail(ErrorCode::EngineMismatch, "tensorrt: createNetworkV2 failed: " + logger().last_errors());
  std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
  if (!parser) core::fail(ErrorCode::BackendUnavailable, "tensorrt: createParser failed");
  if (!parser->parseFromFile(onnx_path.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
    std::string errors;
    for (int i = 0; i < parser->getNbErrors(); ++i) errors += std::string("; ") + parser->getError(i)->desc();
    core::fail(ErrorCode::ModelFormat, "tensorrt: cannot parse " + onnx_path + errors);
  }
  std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
  if (!config) core::fail(ErrorCode::EngineMismatch, "tensorrt: createBuilderConfig failed");
  config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, options.workspace_bytes);
  config->setBuilderOptimizationLevel(options.optimization_level);

  nvinfer1::IOptimizationProfile* prof = builder->createOptimizationProfile();   // owned by the builder
  bool dynamic = false;
  for (int i = 0; i < network->getNbInputs(); ++i) {
    nvinfer1::ITensor* in = network->getInput(i);
    const std::vector<int64_t> dims = dims_vector(in->getDimensions());
    bool has_dynamic = false;
    for (int64_t d : dims) has_dynamic |= d < 0;
    if (!has_dynamic) continue;
    dynamic = true;
    const DimRange r = profile(in->getName(), dims);
    if (r.min.size() != dims.size() || r.opt.size() != dims.size() || r.max.size() != dims.size())
      core::fail(ErrorCode::Internal, std::string("tensorrt: profile rank mismatch for ") + in->getName());
    if (!prof->setDimensions(in->getName(), nvinfer1::OptProfileSelector::kMIN, make_dims(r.min)) ||
        !prof->setDimensions(in->getName(), nvinfer1::OptProfileSelector::kOPT, make_dims(r.opt)) ||
        !prof->setDimensions(in->getName(), nvinfer1::OptProfileSelector::kMAX, make_dims(r.max)))
      core::fail(ErrorCode::Internal, std::string("tensorrt: invalid profile for ") + in->getName() + ": " +
                                          logger().last_errors());
  }
  if (dynamic && config->addOptimizationProfile(prof) < 0)
    core::fail(ErrorCode::Internal, "tensorrt: addOptimizationProfile failed: " + logger().last_errors());

  std::unique_ptr<nvinfer1::ITimingCache> cache;
  if (!options.timing_cache_path.empty()) {
    const std::string blob = read_file(options.timing_cache_path);
    cache.reset(config->createTimingCache(blob.data(), blob.size()));
    if (!cache && !blob.empty()) cache.reset(config->createTimingCache(nullptr, 0));   // stale cache: start anew
    if (cache) config->setTimingCache(*cache, /*ignoreMismatch=*/false);
  }

  std::unique_ptr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
  if (!plan || plan->size() == 0)
    core::fail(ErrorCode::EngineMismatch, "tensorrt: building " + onnx_path + " failed: " + logger().last_errors());
  if (cache) {
    std::unique_ptr<nvinfer1::IHostMemory> blob(config->getTimingCache()->serialize());
    if (blob) write_file_atomic(options.timing_cache_path, blob->data(), blob->size());
  }
  return std::string(static_cast<const char*>(plan->data()), plan->size());
}

}  // namespace pixelllm::runtime::trt
