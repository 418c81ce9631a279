// Pipeline (pipeline.h) over the backend the one selector picks (runtime/select.h): config.json is read here,
// the image is preprocessed here (pipeline/image.h), the tasks run in pipeline/tasks.cc.
#include "pipeline/pipeline.h"

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "pipeline/dense.h"
#include "pipeline/image.h"
#include "pipeline/tasks.h"
#include "runtime/select.h"

namespace pixelllm::pipeline {

using core::ErrorCode;

namespace {

// Largest original image accepted (pixels); the JS layer defaults to 64 MP, this is the hard cap.
constexpr int64_t kMaxImagePixels = int64_t(1) << 28;

class PipelineImpl final : public Pipeline {
 public:
  PipelineImpl(const std::string& dir, const LoadOptions& options) {
    std::error_code ec;
    PIXELLLM_CHECK(std::filesystem::is_directory(dir, ec), ModelNotFound, "model directory not found: " + dir);
    config_ = core::parse_json_file((std::filesystem::path(dir) / "config.json").string());
    core::JsonReader top(config_, "config.json");
    PIXELLLM_CHECK(top.get_string("format", 64, "") == "pixelllm", ModelFormat,
                   dir + "/config.json is not a pixelllm config (\"format\": \"pixelllm\")");
    PIXELLLM_CHECK(options.threads >= 0 && options.threads <= 1024, InvalidArgument, "threads must be 0..1024");
    const MaskResize mask_resize = parse_mask_resize(options.mask_resize);
    runtime::BackendRequest request;
    request.dir = dir;
    request.backend = options.backend;
    request.threads = options.threads;
    request.decoder_weights = options.decoder_weights;
    request.encoder_precision = options.encoder_precision;
    runtime::SelectedBackend selected = runtime::create_backend(request, config_);
    backend_ = std::move(selected.backend);
    model_ = TaskModel::from_config(config_, backend_.get());
    model_.mask_resize = mask_resize;
    dense_ = DenseModel::from_config(config_);

    info_.dir = dir;
    info_.text_decoder = top.get_string("text_decoder");
    info_.image_size = model_.image_size;
    info_.vocab_size = model_.vocab_size;
    info_.bos_token_id = model_.bos;
    info_.eos_token_id = model_.eos;
    info_.pad_token_id = static_cast<int32_t>(top.get_int("pad_token_id", 0, model_.vocab_size - 1, 0));
    info_.max_caption_length = model_.max_caption_length;
    info_.has_proposal_head = backend_->proposal_head != nullptr;
    info_.has_mask_decoder = backend_->mask_decoder != nullptr;
    info_.backend = backend_->name;
    info_.threads = selected.threads;
    info_.decoder_weights = info_.backend == "cpu" ? options.decoder_weights : "";
    info_.mask_resize = options.mask_resize;
    info_.encoder_precision = info_.backend == "cpu" ? options.encoder_precision : "";
  }

  std::shared_ptr<const ImageFeatures> encode(const Image& image) override {
    PIXELLLM_CHECK(image.rgb != nullptr && image.width >= 1 && image.height >= 1, InvalidImage,
                   "image: empty or without pixels");
    PIXELLLM_CHECK(int64_t(image.width) * image.height <= kMaxImagePixels, LimitExceeded,
                   "image: " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                       " has more than " + std::to_string(kMaxImagePixels) + " pixels");
    std::vector<float> canvas, mask;
    auto f = std::make_shared<ImageFeatures>();
    f->owner = this;
    f->geometry = make_canvas(image, model_.image_size, canvas, mask);
    f->features.resize(static_cast<size_t>(model_.feature_grid) * model_.feature_grid * model_.feature_channels);
    f->sam.resize(static_cast<size_t>(model_.sam_grid) * model_.sam_grid * model_.sam_channels);
    backend_->image_encoder->encode(canvas.data(), mask.data(), 1, f->features.data(), f->sam.data());
    return f;
  }

  GenerateResult generate(const ImageFeatures& features, const GenerateRequest& request,
                          const std::function<void(const TokenEvent&)>& on_token,
                          const std::atomic<bool>& cancel) override {
    check_owner(features);
    return run_generate(model_, features, request, on_token, cancel);
  }

  GenerateResult generate_traced(const ImageFeatures& features, const GenerateRequest& request,
                                 const std::atomic<bool>& cancel, TaskTrace& trace) {
    check_owner(features);
    return run_generate(model_, features, request, nullptr, cancel, &trace);
  }

  MaskResult segment(const ImageFeatures& features, const Box& box, const std::atomic<bool>& cancel) override {
    check_owner(features);
    return run_segment(model_, features, box, cancel);
  }

  std::vector<DenseItem> dense(const ImageFeatures& features, const DenseOptions& options,
                               const std::atomic<bool>& cancel) override {
    check_owner(features);
    return run_dense(model_, dense_, features, options, cancel);
  }

  const ModelInfo& info() const override { return info_; }

 private:
  void check_owner(const ImageFeatures& f) const {
    PIXELLLM_CHECK(f.owner == this, InvalidArgument, "features were encoded by another model");
  }

  core::Json config_;
  std::unique_ptr<runtime::Backend> backend_;
  TaskModel model_;
  DenseModel dense_;
  ModelInfo info_;
};

}  // namespace

std::shared_ptr<Pipeline> Pipeline::load(const std::string& dir, const LoadOptions& options) {
  return std::make_shared<PipelineImpl>(dir, options);
}

GenerateResult generate_traced(Pipeline& pipeline, const ImageFeatures& features, const GenerateRequest& request,
                               const std::atomic<bool>& cancel, TaskTrace& trace) {
  auto* impl = dynamic_cast<PipelineImpl*>(&pipeline);
  PIXELLLM_CHECK(impl != nullptr, InvalidArgument, "generate_traced: not a native pipeline");
  return impl->generate_traced(features, request, cancel, trace);
}

}  // namespace pixelllm::pipeline
