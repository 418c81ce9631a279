// A deserialized TensorRT engine and its execution contexts (one per stream): named tensor shapes and addresses,
// enqueueV3, and CUDA graph capture of a whole enqueue sequence with a fallback when capture is not possible.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

namespace pixelllm::runtime::trt {

struct TensorInfo {
  std::string name;
  bool input = false;
  nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
  std::vector<int64_t> dims;   // -1 = dynamic
};

size_t element_size(nvinfer1::DataType type);   // INTERNAL for types we never bind
nvinfer1::Dims make_dims(const std::vector<int64_t>& dims);
std::vector<int64_t> dims_vector(const nvinfer1::Dims& dims);
int64_t volume(const std::vector<int64_t>& dims);

class Engine {
 public:
  // ENGINE_MISMATCH when TensorRT refuses the plan (other version / GPU / corrupt): the caller rebuilds.
  static std::shared_ptr<Engine> deserialize(const std::string& plan_bytes, const std::string& what);
  ~Engine();

  nvinfer1::ICudaEngine& get() const noexcept { return *engine_; }
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  const TensorInfo& tensor(const std::string& name) const;   // INTERNAL when the graph has no such tensor
  bool has_tensor(const std::string& name) const noexcept;
  const std::string& what() const noexcept { return what_; }

 private:
  Engine() = default;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;        // declared first: destroyed after the engine
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::vector<TensorInfo> tensors_;
  std::string what_;
};

class ExecutionContext {
 public:
  explicit ExecutionContext(std::shared_ptr<Engine> engine);
  ~ExecutionContext();
  ExecutionContext(const ExecutionContext&) = delete;
  ExecutionContext& operator=(const ExecutionContext&) = delete;

  const Engine& engine() const noexcept { return *engine_; }
  // LIMIT_EXCEEDED when the shape is outside the optimization profile.
  void set_input_shape(const std::string& name, const std::vector<int64_t>& dims);
  void set_address(const std::string& name, void* ptr);
  std::vector<int64_t> shape(const std::string& name) const;   // after every input shape is set
  // INTERNAL (with the TensorRT log) when enqueueV3 fails.
  void enqueue(cudaStream_t stream);

 private:
  std::shared_ptr<Engine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
};

// A CUDA graph of a recorded stream sequence. capture() runs `body` under stream capture; when the capture or the
// instantiation fails (e.g. an op that cannot be captured), it returns false, leaves no graph and the caller keeps
// launching `body` directly. The body must be replayable unchanged: fixed shapes and addresses.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph() { reset(); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  bool capture(cudaStream_t stream, const std::function<void()>& body, std::string* why) noexcept;
  void launch(cudaStream_t stream);
  bool ready() const noexcept { return exec_ != nullptr; }
  void reset() noexcept;

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace pixelllm::runtime::trt
