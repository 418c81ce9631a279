#include "runtime/tensorrt/engine.h"

#include "core/error.h"
#include "runtime/tensorrt/cuda_util.h"
#include "runtime/tensorrt/logger.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;

size_t element_size(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32:
      return 4;
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16:
      return 2;
    case nvinfer1::DataType::kINT64:
      return 8;
    case nvinfer1::DataType::kBOOL:
    case nvinfer1::DataType::kUINT8:
    case nvinfer1::DataType::kINT8:
      return 1;
    default:
      core::fail(ErrorCode::Internal, "tensorrt: unsupported I/O data type " + std::to_string(int(type)));
  }
}

nvinfer1::Dims make_dims(const std::vector<int64_t>& dims) {
  nvinfer1::Dims d{};
  if (dims.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS))
    core::fail(ErrorCode::Internal, "tensorrt: too many dimensions");
  d.nbDims = static_cast<int32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) d.d[i] = dims[i];
  return d;
}

std::vector<int64_t> dims_vector(const nvinfer1::Dims& dims) {
  std::vector<int64_t> v;
  for (int i = 0; i < dims.nbDims; ++i) v.push_back(dims.d[i]);
  return v;
}

int64_t volume(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) core::fail(ErrorCode::Internal, "tensorrt: volume of a dynamic shape");
    n *= d;
  }
  return n;
}

std::shared_ptr<Engine> Engine::deserialize(const std::string& plan_bytes, const std::string& what) {
  std::shared_ptr<Engine> e(new Engine());
  e->what_ = what;
  logger().clear();
  e->runtime_.reset(nvinfer1::createInferRuntime(logger()));
  if (!e->runtime_) core::fail(ErrorCode::BackendUnavailable, "tensorrt: createInferRuntime failed");
  e->engine_.reset(e->runtime_->deserializeCudaEngine(plan_bytes.data(), plan_bytes.size()));
  if (!e->engine_)
    core::fail(ErrorCode::EngineMismatch, "tensorrt: " + what + ": the plan was refused: " + logger().last_errors());
  const int n = e->engine_->getNbIOTensors();
  for (int i = 0; i < n; ++i) {
    TensorInfo t;
    t.name = e->engine_->getIOTensorName(i);
    t.input = e->engine_->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
    t.type = e->engine_->getTensorDataType(t.name.c_str());
    t.dims = dims_vector(e->engine_->getTensorShape(t.name.c_str()));
    e->tensors_.push_back(std::move(t));
  }
  return e;
}

Engine::~Engine() = default;

const TensorInfo& Engine::tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  core::fail(ErrorCode::Internal, "tensorrt: " + what_ + " has no tensor '" + name + "'");
}

bool Engine::has_tensor(const std::string& name) const noexcept {
  for (const auto& t : tensors_)
    if (t.name == name) return true;
  return false;
}

ExecutionContext::ExecutionContext(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {
  context_.reset(engine_->get().createExecutionContext());
  if (!context_)
    core::fail(ErrorCode::OutOfMemory, "tensorrt: " + engine_->what() + ": createExecutionContext failed: " +
                                           logger().last_errors());
}

ExecutionContext::~ExecutionContext() = default;

void ExecutionContext::set_input_shape(const std::string& name, const std::vector<int64_t>& dims) {
  if (!context_->setInputShape(name.c_str(), make_dims(dims))) {
    std::string s;
    for (int64_t d : dims) s += (s.empty() ? "" : ",") + std::to_string(d);
    core::fail(ErrorCode::LimitExceeded, "tensorrt: " + engine_->what() + ": input '" + name + "' shape (" + s +
                                             ") is outside the engine's optimization profile");
  }
}

void ExecutionContext::set_address(const std::string& name, void* ptr) {
  if (!context_->setTensorAddress(name.c_str(), ptr))
    core::fail(ErrorCode::Internal, "tensorrt: " + engine_->what() + ": setTensorAddress('" + name + "') failed");
}

std::vector<int64_t> ExecutionContext::shape(const std::string& name) const {
  return dims_vector(context_->getTensorShape(name.c_str()));
}

void ExecutionContext::enqueue(cudaStream_t stream) {
  if (!context_->enqueueV3(stream))
    core::fail(ErrorCode::Internal, "tensorrt: " + engine_->what() + ": enqueueV3 failed: " + logger().last_errors());
}

bool CudaGraph::capture(cudaStream_t stream, const std::function<void()>& body, std::string* why) noexcept {
  reset();
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    if (why) *why = "cudaStreamBeginCapture failed";
    cudaGetLastError();
    return false;
  }
  std::string failure;
  try {
    body();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  const cudaError_t end = cudaStreamEndCapture(stream, &graph_);
  if (!failure.empty() || end != cudaSuccess || graph_ == nullptr) {
    if (why) *why = failure.empty() ? std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end) : failure;
    cudaGetLastError();
    reset();
    return false;
  }
  if (cudaGraphInstantiate(&exec_, graph_, 0) != cudaSuccess) {
    if (why) *why = "cudaGraphInstantiate failed";
    cudaGetLastError();
    reset();
    return false;
  }
  return true;
}

void CudaGraph::launch(cudaStream_t stream) { cuda_check(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch"); }

void CudaGraph::reset() noexcept {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
  exec_ = nullptr;
  graph_ = nullptr;
}

}  // namespace pixelllm::runtime::trt
