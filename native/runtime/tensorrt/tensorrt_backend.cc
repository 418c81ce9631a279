// The TensorRT backend: probe_tensorrt and create_tensorrt_backend (declared in runtime/backend.h), and the
// component classes over the plans of model_dir/trt/<gpu>-<trt version>/ built from model_dir/onnx/.
#include <filesystem>

#include <NvInferRuntime.h>

#include "core/error.h"
#include "runtime/backend.h"
#include "runtime/tensorrt/cuda_util.h"
#include "runtime/tensorrt/logger.h"
#include "runtime/tensorrt/trt_model.h"

namespace pixelllm::runtime {
namespace trt {
namespace {

using core::ErrorCode;

class TrtImageEncoder final : public ImageEncoderBackend {
 public:
  explicit TrtImageEncoder(std::shared_ptr<Engine> e) : runner_(std::move(e)) {
    size_ = runner_.engine().tensor("images").dims[1];
  }
  void encode(const float* images, const float* padding_mask, int batch, float* features,
              float* sam_features) override {
    runner_.run({{"images", images, {batch, size_, size_, 3}}, {"padding_mask", padding_mask, {batch, size_, size_}}},
                {{"features", features}, {"sam_features", sam_features}});
  }

 private:
  GraphRunner runner_;
  int64_t size_ = 0;
};

class TrtPromptAdapter final : public PromptAdapterBackend {
 public:
  explicit TrtPromptAdapter(std::shared_ptr<Engine> e) : runner_(std::move(e)) {
    dims_ = runner_.engine().tensor("features").dims;
  }
  void visual_tokens(const float* features, int batch, const float* boxes, int prompts, float* tokens) override {
    runner_.run({{"features", features, {batch, dims_[1], dims_[2], dims_[3]}}, {"boxes", boxes, {batch, prompts, 4}}},
                {{"visual_tokens", tokens}});
  }

 private:
  GraphRunner runner_;
  std::vector<int64_t> dims_;
};

class TrtMaskDecoder final : public MaskDecoderBackend {
 public:
  explicit TrtMaskDecoder(std::shared_ptr<Engine> e) : runner_(std::move(e)) {
    sam_ = runner_.engine().tensor("sam_features").dims;
    vis_ = runner_.engine().tensor("visual_tokens").dims;
    text_dim_ = runner_.engine().tensor("text_hidden").dims[3];
  }
  void decode(const float* sam_features, int batch, const float* boxes, int prompts, const float* visual_tokens,
              const float* text_hidden, int text_len, float* mask_logits, float* iou) override {
    runner_.run({{"sam_features", sam_features, {batch, sam_[1], sam_[2], sam_[3]}},
                 {"boxes", boxes, {batch, prompts, 4}},
                 {"visual_tokens", visual_tokens, {batch, prompts, vis_[2], vis_[3]}},
                 {"text_hidden", text_hidden, {batch, prompts, text_len, text_dim_}}},
                {{"mask_logits", mask_logits}, {"iou", iou}});
  }

 private:
  GraphRunner runner_;
  std::vector<int64_t> sam_, vis_;
  int64_t text_dim_ = 0;
};

class TrtProposalHead final : public ProposalHeadBackend {
 public:
  explicit TrtProposalHead(std::shared_ptr<Engine> e) : runner_(std::move(e)) {
    dims_ = runner_.engine().tensor("features").dims;
  }
  void proposals(const float* features, int batch, float* heatmap, float* box_regs) override {
    runner_.run({{"features", features, {batch, dims_[1], dims_[2], dims_[3]}}},
                {{"heatmap", heatmap}, {"box_regs", box_regs}});
  }

 private:
  GraphRunner runner_;
  std::vector<int64_t> dims_;
};

class TrtTextDecoder final : public TextDecoderBackend {
 public:
  explicit TrtTextDecoder(std::shared_ptr<TrtModel> model) : model_(std::move(model)) {
    model_->engine("decoder_prefill");   // build/load the plans now, not in the first request
    model_->engine("decoder_step");
    // T5's official full pass (the mask text states) differs from the prefill from the EOS on: its own graph,
    // required (MODEL_NOT_FOUND with the export command when the ONNX is missing).
    if (model_->t5()) forward_ = std::make_unique<GraphRunner>(model_->engine("decoder_forward"));
  }
  std::unique_ptr<DecoderSession> new_session(const DecoderLimits& limits) const override {
    return new_trt_decoder_session(model_, limits);
  }
  void forward(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text, int n_text,
               const float* image_hw, const DecoderOutputs& out) const override {
    if (!forward_) {   // GIT: the official pass is the prefill
      TextDecoderBackend::forward(visual, rows, context, n_context, text, n_text, image_hw, out);
      return;
    }
    const auto& vis = forward_->engine().tensor("visual_tokens").dims;
    const std::vector<int32_t> no_context(static_cast<size_t>(rows), 0);   // "no context" = one 0 token
    const int32_t* ctx = n_context > 0 ? context : no_context.data();
    const int nc = n_context > 0 ? n_context : 1;
    std::vector<HostOutput> outputs;
    if (out.logits) outputs.push_back({"logits", out.logits});
    if (out.hidden) outputs.push_back({"hidden", out.hidden});
    if (out.corners) outputs.push_back({"corners", out.corners});
    if (out.point_logits) outputs.push_back({"point_logits", out.point_logits});
    forward_->run({{"visual_tokens", visual, {rows, vis[1], vis[2]}},
                   {"context_tokens", ctx, {rows, nc}, true},
                   {"text_tokens", text, {rows, n_text}, true},
                   {"image_hw", image_hw, {rows, 2}}},
                  outputs);
  }

 private:
  std::shared_ptr<TrtModel> model_;
  std::unique_ptr<GraphRunner> forward_;   // GraphRunner serialises concurrent callers itself
};

}  // namespace
}  // namespace trt

TensorRtProbe probe_tensorrt() noexcept {
  TensorRtProbe p;
  try {
    trt::DeviceInfo dev;
    if (!trt::query_device(&dev, &p.reason)) return p;
    const int v = getInferLibVersion();
    if (v / 10000 != NV_TENSORRT_MAJOR) {
      p.reason = "TensorRT library " + std::to_string(v) + " does not match the headers this addon was built with (" +
                 std::to_string(NV_TENSORRT_MAJOR) + ".x)";
      return p;
    }
    std::unique_ptr<nvinfer1::IRuntime> rt(nvinfer1::createInferRuntime(trt::logger()));
    if (!rt) {
      p.reason = "TensorRT createInferRuntime failed: " + trt::logger().last_errors();
      return p;
    }
    p.available = true;
  } catch (const std::exception& e) {
    p.reason = std::string("TensorRT probe failed: ") + e.what();
  } catch (...) {
    p.reason = "TensorRT probe failed";
  }
  return p;
}

std::unique_ptr<Backend> create_tensorrt_backend(const std::string& model_dir, const TensorRtOptions& options) {
  trt::DeviceInfo dev;
  std::string reason;
  if (!trt::query_device(&dev, &reason)) core::fail(core::ErrorCode::BackendUnavailable, "backend 'tensorrt': " + reason);
  const TensorRtProbe probe = probe_tensorrt();
  if (!probe.available) core::fail(core::ErrorCode::BackendUnavailable, "backend 'tensorrt': " + probe.reason);
  trt::cuda_check(cudaSetDevice(dev.device), "cudaSetDevice");
  auto model = std::make_shared<trt::TrtModel>(model_dir, options, dev);
  auto backend = std::make_unique<Backend>();
  backend->name = "tensorrt";
  backend->image_encoder = std::make_unique<trt::TrtImageEncoder>(model->engine("image_encoder"));
  backend->prompt_adapter = std::make_unique<trt::TrtPromptAdapter>(model->engine("prompt_adapter"));
  backend->text_decoder = std::make_unique<trt::TrtTextDecoder>(model);
  if (model->has_onnx("mask_decoder"))
    backend->mask_decoder = std::make_unique<trt::TrtMaskDecoder>(model->engine("mask_decoder"));
  // dense captioning: a model with a proposal head needs its graph (MODEL_NOT_FOUND with the export command)
  if (model->has_component("proposal_head"))
    backend->proposal_head = std::make_unique<trt::TrtProposalHead>(model->engine("proposal_head"));
  return backend;
}

}  // namespace pixelllm::runtime
