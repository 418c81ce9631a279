#include "runtime/tensorrt/trt_model.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/plan_manifest.h"
#include "runtime/sha256.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;

TrtModel::TrtModel(const std::string& model_dir, const TensorRtOptions& options, const DeviceInfo& device)
    : dir_(model_dir), options_(options), store_(model_dir, runtime_identity(device)) {
  std::ifstream f(model_dir + "/config.json", std::ios::binary);
  if (!f) core::fail(ErrorCode::ModelNotFound, model_dir + "/config.json not found");
  config_text_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  const nlohmann::json cfg = nlohmann::json::parse(config_text_, nullptr, false);
  if (!cfg.is_object()) core::fail(ErrorCode::ModelFormat, model_dir + "/config.json is not a JSON object");
  t5_ = cfg.value("text_decoder", std::string()) == "t5";
  for (auto it = cfg.begin(); it != cfg.end(); ++it)
    if (it->is_object()) components_.insert(it.key());
  eos_id_ = cfg.value("eos_token_id", 0);
  if (cfg.contains("prompt_adapter") && cfg["prompt_adapter"].is_object())
    visual_tokens_ = cfg["prompt_adapter"].value("num_outputs", 32);
  if (options_.decoder.max_rows < 1 || options_.decoder.max_context < 1 || options_.decoder.max_text < 1 ||
      options_.max_batch < 1 || options_.max_prompts < 1)
    core::fail(ErrorCode::LimitExceeded, "tensorrt: every profile limit must be >= 1");
}

std::string TrtModel::onnx_path(const std::string& group) const {
  const std::string name = plan_onnx_file(dir_, group, options_.prefer_fp16);
  return dir_ + "/onnx/" + (name.empty() ? group + ".onnx" : name);
}

bool TrtModel::has_onnx(const std::string& group) const { return std::filesystem::exists(onnx_path(group)); }

int TrtModel::cache_capacity() const noexcept {
  const DecoderLimits& l = options_.decoder;
  return t5_ ? l.max_text : visual_tokens_ + l.max_context + l.max_text;
}

DimRange TrtModel::profile(const std::string& group, const std::string& input,
                           const std::vector<int64_t>& dims) const {
  const DecoderLimits& l = options_.decoder;
  const bool decoder = group.rfind("decoder_", 0) == 0;
  DimRange r{dims, dims, dims};
  auto set = [&](size_t axis, int64_t lo, int64_t opt, int64_t hi) {
    if (axis >= dims.size() || dims[axis] >= 0) return;
    r.min[axis] = lo;
    r.opt[axis] = opt;
    r.max[axis] = hi;
  };
  auto starts = [&](const char* p) { return input.rfind(p, 0) == 0; };
  set(0, 1, 1, decoder ? l.max_rows : options_.max_batch);
  if (group == "prompt_adapter" || group == "mask_decoder") set(1, 1, 1, options_.max_prompts);
  if (group == "mask_decoder" && input == "text_hidden") set(2, 1, (l.max_text + 1) / 2, l.max_text);
  if (input == "context_tokens") set(1, 1, std::min(4, l.max_context), l.max_context);
  if (input == "text_tokens") set(1, 1, 1, l.max_text);
  const int cap = cache_capacity();
  if (input == "past_key_bias") set(1, 1, cap, cap);
  if (starts("past_")) set(2, 1, cap, cap);
  const int enc = visual_tokens_ + l.max_context;
  if (input == "encoder_key_bias") set(1, 1, visual_tokens_ + 1, enc);
  if (starts("cross_")) set(2, 1, visual_tokens_ + 1, enc);
  for (size_t i = 0; i < dims.size(); ++i)
    if (r.min[i] < 0)
      core::fail(ErrorCode::Internal, "tensorrt: no profile rule for " + group + " input '" + input + "' axis " +
                                          std::to_string(i));
  return r;
}

std::shared_ptr<Engine> TrtModel::engine(const std::string& group, PlanOutcome* outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = engines_.find(group);
  if (it != engines_.end()) return it->second;
  const std::string onnx = onnx_path(group);
  if (!std::filesystem::exists(onnx))
    core::fail(ErrorCode::ModelNotFound, "tensorrt: " + onnx + " not found (python -m pixelllm_ref.export_onnx " + dir_ +
                                             " " + dir_ + "/onnx)");
  const std::string config_hash =
      plan_config_hash(config_text_, group, std::filesystem::path(onnx).filename().string(), options_);
  BuildOptions bo;
  bo.optimization_level = options_.optimization_level;
  bo.workspace_bytes = options_.workspace_bytes;
  bo.timing_cache_path = store_.timing_cache_path();
  auto build = [&] {
    return build_plan(onnx, bo, [&](const std::string& in, const std::vector<int64_t>& d) {
      return profile(group, in, d);
    });
  };
  std::shared_ptr<Engine> e;
  PlanOutcome done;
  const std::string bytes = store_.load_or_build(group, onnx, config_hash, build, &done);
  try {
    e = Engine::deserialize(bytes, group);
  } catch (const core::Error& err) {
    if (err.code() != ErrorCode::EngineMismatch || done.built) throw;
    store_.invalidate(done.key);   // the manifest matched but TensorRT refused it: rebuild once, never load blindly
    e = Engine::deserialize(store_.load_or_build(group, onnx, config_hash, build, &done), group);
    done.reason = "TensorRT refused the stored plan: " + std::string(err.what());
  }
  engines_[group] = e;
  outcomes_.push_back(done);
  if (outcome) *outcome = done;
  return e;
}

// ---- GraphRunner -------------------------------------------------------------------------------------------------
GraphRunner::GraphRunner(std::shared_ptr<Engine> engine) : engine_(engine), context_(engine) {}

void GraphRunner::run(const std::vector<HostTensor>& inputs, const std::vector<HostOutput>& outputs) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t staging = 0;
  std::vector<size_t> in_bytes;
  for (const auto& in : inputs) {
    const TensorInfo& t = engine_->tensor(in.name);
    in_bytes.push_back(static_cast<size_t>(volume(in.dims)) * element_size(t.type));
    staging += in_bytes.back();
    context_.set_input_shape(in.name, in.dims);
  }
  std::vector<size_t> out_bytes;
  for (const auto& out : outputs) {
    const TensorInfo& t = engine_->tensor(out.name);
    if (t.type != nvinfer1::DataType::kFLOAT)
      core::fail(ErrorCode::Internal, "tensorrt: output " + out.name + " is not float32 (export keeps I/O float32)");
    out_bytes.push_back(static_cast<size_t>(volume(context_.shape(out.name))) * sizeof(float));
    staging = std::max(staging, out_bytes.back());
  }
  staging_.resize(std::max<size_t>(staging, 1));
  cudaStream_t s = stream_.get();
  size_t off = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const HostTensor& in = inputs[i];
    const TensorInfo& t = engine_->tensor(in.name);
    char* host = staging_.as<char>() + off;
    if (in.int32_ids) {
      if (t.type != nvinfer1::DataType::kINT64 && t.type != nvinfer1::DataType::kINT32)
        core::fail(ErrorCode::Internal, "tensorrt: " + in.name + " is not an integer input");
      const int32_t* src = static_cast<const int32_t*>(in.data);
      const int64_t n = volume(in.dims);
      for (int64_t k = 0; k < n; ++k) {
        if (t.type == nvinfer1::DataType::kINT64) reinterpret_cast<int64_t*>(host)[k] = src[k];
        else reinterpret_cast<int32_t*>(host)[k] = src[k];
      }
    } else {
      std::memcpy(host, in.data, in_bytes[i]);
    }
    DeviceBuffer& d = device_[in.name];
    d.resize(std::max<size_t>(in_bytes[i], 1));
    cuda_check(cudaMemcpyAsync(d.get(), host, in_bytes[i], cudaMemcpyHostToDevice, s), "upload");
    context_.set_address(in.name, d.get());
    off += in_bytes[i];
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    DeviceBuffer& d = device_[outputs[i].name];
    d.resize(std::max<size_t>(out_bytes[i], 1));
    context_.set_address(outputs[i].name, d.get());
  }
  // outputs nobody asked for still need an address
  for (const TensorInfo& t : engine_->tensors()) {
    if (t.input) continue;
    bool asked = false;
    for (const auto& o : outputs) asked |= o.name == t.name;
    if (asked) continue;
    DeviceBuffer& d = device_[t.name];
    d.resize(std::max<size_t>(static_cast<size_t>(volume(context_.shape(t.name))) * element_size(t.type), 1));
    context_.set_address(t.name, d.get());
  }
  context_.enqueue(s);
  stream_.synchronize("inputs consumed");   // the staging area is reused for the outputs
  for (size_t i = 0; i < outputs.size(); ++i) {
    cuda_check(cudaMemcpyAsync(staging_.get(), device_[outputs[i].name].get(), out_bytes[i], cudaMemcpyDeviceToHost, s),
               "download");
    stream_.synchronize("download");
    std::memcpy(outputs[i].data, staging_.get(), out_bytes[i]);
  }
}

}  // namespace pixelllm::runtime::trt
