#include "addon/model.h"

#include <atomic>
#include <limits>

#include "addon/addon.h"
#include "addon/args.h"
#include "addon/cancel.h"
#include "addon/convert.h"
#include "addon/errors.h"
#include "addon/features.h"
#include "addon/generate_call.h"
#include "addon/workers.h"

namespace pixelllm::addon {

namespace {
std::atomic<uint64_t> next_model_id{1};

pipeline::GenerateRequest::Task ParseTask(Napi::Env env, const std::string& task) {
  if (task == "caption") return pipeline::GenerateRequest::Caption;
  if (task == "refer") return pipeline::GenerateRequest::Refer;
  if (task == "describe") return pipeline::GenerateRequest::Describe;
  Throw(env, "INVALID_ARGUMENT", "request.task must be 'caption', 'refer' or 'describe', got '" + task + "'");
}
}  // namespace

Napi::Function Model::Define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {StaticMethod<&Model::Load>("load"), InstanceMethod<&Model::Info>("info"),
                      InstanceMethod<&Model::Encode>("encode"), InstanceMethod<&Model::Generate>("generate"),
                      InstanceMethod<&Model::Segment>("segment"), InstanceMethod<&Model::Dense>("dense"),
                      InstanceMethod<&Model::Dispose>("dispose"), InstanceAccessor<&Model::Disposed>("disposed")});
}

Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Throw(info.Env(), "INVALID_ARGUMENT", "use Model.load(dir, options), not `new Model()`");
  }
  pipeline_ = std::move(*info[0].As<Napi::External<std::shared_ptr<pipeline::Pipeline>>>().Data());
  id_ = next_model_id.fetch_add(1);
}

Napi::Object Model::Create(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline) {
  return Data(env).model_ctor.New({Napi::External<std::shared_ptr<pipeline::Pipeline>>::New(env, &pipeline)});
}

const std::shared_ptr<pipeline::Pipeline>& Model::Live(Napi::Env env) const {
  if (!pipeline_) Throw(env, "DISPOSED", "the model was disposed");
  return pipeline_;
}

Napi::Value Model::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = args::String(info[0], "dir");
  if (dir.empty()) Throw(env, "INVALID_ARGUMENT", "dir must not be empty");
  Napi::Object options = args::Options(info[1], "options");
  pipeline::LoadOptions load;
  load.backend = args::OptionalChoice(options, "backend", "auto", {"auto", "cpu", "tensorrt"});
  load.threads = args::OptionalInt(options, "threads", 0, 0, args::kMaxThreads);
  load.decoder_weights = args::OptionalChoice(options, "decoderWeights", "fp32", {"fp32", "bf16"});
  load.encoder_precision = args::OptionalChoice(options, "encoderPrecision", "fp32", {"fp32", "bf16"});
  load.mask_resize = args::OptionalChoice(options, "maskResize", "sam", {"sam", "evaluator"});
  return (new LoadWorker(env, std::move(dir), std::move(load)))->Start();
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
  return InfoToJs(info.Env(), Live(info.Env())->info());
}

Napi::Value Model::Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& pipeline = Live(env);
  args::Bytes bytes = args::ByteView(info[0], "rgb");
  const int width = args::Int(info[1], "width", 1, args::kMaxImageSide);
  const int height = args::Int(info[2], "height", 1, args::kMaxImageSide);
  const size_t expected = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  if (bytes.length != expected) {
    Throw(env, "INVALID_IMAGE", "rgb has " + std::to_string(bytes.length) + " bytes, expected width*height*3 = " +
                                    std::to_string(expected) + " (" + std::to_string(width) + "x" + std::to_string(height) + " RGB8)");
  }
  pipeline::Image image{width, height, bytes.data};
  return (new EncodeWorker(env, pipeline, id_, info[0], image))->Start();
}

Napi::Value Model::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& pipeline = Live(env);
  Features& features = Features::From(info[0], id_);
  Napi::Object req = args::Options(info[1], "request");
  const pipeline::ModelInfo& model = pipeline->info();

  pipeline::GenerateRequest request;
  request.task = ParseTask(env, args::OptionalString(req, "task", "caption"));
  if (!req.Get("box").IsUndefined()) request.box = args::Box(req.Get("box"), "request.box", features.width(), features.height());
  if (!req.Get("contextTokens").IsUndefined()) request.context_tokens = args::Tokens(req.Get("contextTokens"), "request.contextTokens", model.vocab_size);
  if (!req.Get("textTokens").IsUndefined()) request.text_tokens = args::Tokens(req.Get("textTokens"), "request.textTokens", model.vocab_size);
  request.max_tokens = args::OptionalInt(req, "maxTokens", 0, 0, static_cast<int>(args::kMaxTokens));
  request.beams = args::OptionalInt(req, "beams", 1, 1, args::kMaxBeams);
  request.with_mask = args::OptionalBool(req, "withMask", false);

  switch (request.task) {
    case pipeline::GenerateRequest::Describe:
      if (!request.box) Throw(env, "INVALID_BOX", "describe needs request.box");
      break;
    case pipeline::GenerateRequest::Refer:
      if (request.text_tokens.empty()) Throw(env, "INVALID_TEXT", "refer needs request.textTokens (the expression)");
      break;
    case pipeline::GenerateRequest::Caption:
      if (request.box) Throw(env, "INVALID_ARGUMENT", "caption takes no box (use describe)");
      break;
  }
  if (request.task != pipeline::GenerateRequest::Refer && !request.text_tokens.empty()) {
    Throw(env, "INVALID_ARGUMENT", "textTokens are for refer only");
  }
  if (request.with_mask && request.task != pipeline::GenerateRequest::Refer) {
    Throw(env, "INVALID_ARGUMENT", "withMask is for refer only (use segment for a box)");
  }
  if (!info[2].IsUndefined() && !info[2].IsNull() && !info[2].IsFunction()) {
    Throw(env, "INVALID_ARGUMENT", "onToken must be a function");
  }
  CancelFlag cancel = CancelToken::FlagOf(info[3], "cancel");
  return StartGenerate(env, pipeline, features.features(), std::move(request), info[2], std::move(cancel));
}

Napi::Value Model::Segment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& pipeline = Live(env);
  Features& features = Features::From(info[0], id_);
  pipeline::Box box = args::Box(info[1], "box", features.width(), features.height());
  CancelFlag cancel = CancelToken::FlagOf(info[2], "cancel");
  return (new SegmentWorker(env, pipeline, features.features(), box, std::move(cancel)))->Start();
}

Napi::Value Model::Dense(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& pipeline = Live(env);
  Features& features = Features::From(info[0], id_);
  Napi::Object opts = args::Options(info[1], "options");
  pipeline::DenseOptions options;
  options.max_boxes = args::OptionalInt(opts, "maxBoxes", 0, 0, 1000);
  options.score_threshold = args::OptionalFloat(opts, "scoreThreshold", -1.f, 0.f, 1.f);
  options.nms_iou = args::OptionalFloat(opts, "nmsIou", -1.f, 0.f, 1.f);
  options.max_tokens = args::OptionalInt(opts, "maxTokens", 0, 0, static_cast<int>(args::kMaxTokens));
  if (!opts.Get("contextTokens").IsUndefined())
    options.context_tokens = args::Tokens(opts.Get("contextTokens"), "options.contextTokens", pipeline->info().vocab_size);
  CancelFlag cancel = CancelToken::FlagOf(info[2], "cancel");
  return (new DenseWorker(env, pipeline, features.features(), options, std::move(cancel)))->Start();
}

// Later calls fail with DISPOSED; calls in flight keep their own reference and finish normally. The pipeline's
// memory is freed when the last of them completes.
void Model::Dispose(const Napi::CallbackInfo&) { pipeline_.reset(); }

Napi::Value Model::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !pipeline_); }

}  // namespace pixelllm::addon
