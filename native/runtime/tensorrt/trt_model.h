// What every TensorRT component of one model shares: the device, the plan store, the options and the engines
// (built or loaded once per group), plus GraphRunner, the host-in/host-out runner of the non-decoder graphs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/tensorrt/cuda_util.h"
#include "runtime/tensorrt/engine.h"
#include "runtime/tensorrt/engine_builder.h"
#include "runtime/tensorrt/plan_store.h"

namespace pixelllm::runtime::trt {

class TrtModel {
 public:
  TrtModel(const std::string& model_dir, const TensorRtOptions& options, const DeviceInfo& device);

  // The engine of `group` (decoder_step, ...): its plan loaded or built; a plan TensorRT refuses is rebuilt once.
  // `outcome` (optional) says whether the plan was built or reused (the first call per group; later calls return
  // the cached engine and leave it untouched).
  std::shared_ptr<Engine> engine(const std::string& group, PlanOutcome* outcome = nullptr);
  // Every plan loaded or built so far, in order.
  std::vector<PlanOutcome> outcomes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return outcomes_;
  }
  bool has_onnx(const std::string& group) const;
  const TensorRtOptions& options() const noexcept { return options_; }
  bool t5() const noexcept { return t5_; }
  // config.json has a section of that name (e.g. "proposal_head": the model does dense captioning).
  bool has_component(const std::string& name) const { return components_.count(name) > 0; }
  int visual_tokens() const noexcept { return visual_tokens_; }
  int32_t eos_id() const noexcept { return eos_id_; }

  // Profile range of a dynamic input of `group` (axis names as in pixelllm_ref/export_onnx.py).
  DimRange profile(const std::string& group, const std::string& input, const std::vector<int64_t>& dims) const;
  int cache_capacity() const noexcept;   // KV entries of the decoder_step profile (GIT: prefix + text)

 private:
  std::string onnx_path(const std::string& group) const;

  std::string dir_;
  TensorRtOptions options_;
  std::string config_text_;
  bool t5_ = false;
  std::set<std::string> components_;
  int visual_tokens_ = 32;
  int32_t eos_id_ = 0;
  PlanStore store_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Engine>> engines_;
  std::vector<PlanOutcome> outcomes_;
};

struct HostTensor {
  std::string name;
  const void* data = nullptr;          // inputs: host data; int32 ids are widened to the engine's int64
  std::vector<int64_t> dims;
  bool int32_ids = false;
};

struct HostOutput {
  std::string name;
  void* data = nullptr;                // float32 host memory, sized by the caller from the known shapes
};

// One execution context on its own stream, serialised by a mutex (concurrent callers queue); device buffers and
// pinned staging grow to the largest call and are reused.
class GraphRunner {
 public:
  explicit GraphRunner(std::shared_ptr<Engine> engine);
  void run(const std::vector<HostTensor>& inputs, const std::vector<HostOutput>& outputs);
  const Engine& engine() const { return *engine_; }

 private:
  std::shared_ptr<Engine> engine_;
  std::mutex mu_;
  Stream stream_;
  ExecutionContext context_;
  std::map<std::string, DeviceBuffer> device_;
  PinnedBuffer staging_;
};

std::unique_ptr<DecoderSession> new_trt_decoder_session(std::shared_ptr<TrtModel> model, const DecoderLimits& limits);

}  // namespace pixelllm::runtime::trt
