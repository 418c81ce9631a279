#include "runtime/cpu/cpu_backend.h"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"
#include "model/eva02_encoder.h"
#include "model/feature_fusion.h"
#include "model/git_decoder.h"
#include "model/mask_adapter.h"
#include "model/mask_decoder.h"
#include "model/point_head.h"
#include "model/preprocess.h"
#include "model/prompt_adapter.h"
#include "model/prompt_encoder.h"
#include "model/proposal_head.h"
#include "model/sam_image_encoder.h"
#include "model/t5.h"
#include "runtime/cpu/cpu_decoder.h"

namespace pixelllm::runtime::cpu {

namespace {

// The loaded model every component of one backend shares (each component holds a shared_ptr, so the order in
// which the Backend's members are destroyed does not matter).
struct Shared {
  Shared(const core::Json& config, std::shared_ptr<core::SafeTensors> w, const CpuBackendOptions& o)
      : cfg(config),
        weights(std::move(w)),
        pool(pixelllm::cpu::blas_set_threads(o.threads)) {
    core::JsonReader top(cfg, "config.json");
    image_size = static_cast<int>(top.get_int("image_size", 16, 8192));
    sam = std::make_unique<model::SamImageEncoder>(top.object("sam_image_encoder"), *weights, "sam_image_encoder.",
                                                   o.encoder_weights);
    eva = std::make_unique<model::Eva02Encoder>(top.object("eva02_encoder"), *weights, "eva02_encoder.",
                                                o.encoder_weights);
    fusion = std::make_unique<model::FeatureFusion>(top.object("feature_fusion"), *weights);
    PIXELLLM_CHECK(sam->config().pixels.image_size == image_size && eva->config().pixels.image_size == image_size,
                   ConfigMismatch,
                   "config.json: sam_image_encoder / eva02_encoder image_size must equal the top-level image_size " +
                       std::to_string(image_size));
    fusion->check_input("sam_image_encoder", sam->grid(), sam->out_channels());
    fusion->check_input("eva02_encoder", eva->grid(), eva->out_channels());
    prompt_encoder = std::make_unique<model::PromptEncoder>(cfg, *weights);
    prompt_adapter = std::make_unique<model::PromptAdapter>(cfg, *weights);
    const std::string head = top.get_string("text_decoder");
    if (head == "git_decoder")
      text = model::GitDecoder::load(top.object("git_decoder"), *weights, o.decoder_weights);
    else if (head == "t5")
      text = model::T5::load(top.object("t5"), *weights, o.decoder_weights);
    else
      core::fail(core::ErrorCode::ConfigMismatch, "config.json: text_decoder '" + head + "' (git_decoder, t5)");
    points = model::PointHead::load(top.object("point_head"), *weights);
    visual_tokens = static_cast<int>(prompt_adapter->tokens_per_prompt(fusion->output_size(), fusion->output_size()));
    PIXELLLM_CHECK(prompt_adapter->token_dim() == text->visual_dim(), ConfigMismatch,
                   "prompt_adapter token width " + std::to_string(prompt_adapter->token_dim()) +
                       " != text decoder visual width " + std::to_string(text->visual_dim()));
    if (top.has("mask_decoder")) {
      mask_adapter = std::make_unique<model::MaskAdapter>(cfg, *weights);
      mask_decoder = std::make_unique<model::MaskDecoder>(cfg, *weights);
      const int g = sam->grid();
      dense_pe.resize(static_cast<size_t>(g) * g * prompt_encoder->embed_dim());
      prompt_encoder->dense_pe(g, g, dense_pe.data());
    }
    if (top.has("proposal_head")) {
      proposals = model::ProposalHead::load(top.object("proposal_head"), *weights);
      PIXELLLM_CHECK(proposals->config().input_dim == fusion->out_channels() &&
                         proposals->config().grid_size == fusion->output_size(),
                     ConfigMismatch,
                     "config.json: proposal_head input_dim/grid_size must equal the fused features' channels " +
                         std::to_string(fusion->out_channels()) + " / grid " +
                         std::to_string(fusion->output_size()));
    }
  }

  core::Json cfg;
  std::shared_ptr<core::SafeTensors> weights;
  std::shared_ptr<core::ThreadPool> pool;  // the GEMM pool (cpu::blas_set_threads): kernels and products share it
  std::mutex compute;
  int image_size = 0, visual_tokens = 0;
  std::unique_ptr<model::SamImageEncoder> sam;
  std::unique_ptr<model::Eva02Encoder> eva;
  std::unique_ptr<model::FeatureFusion> fusion;
  std::unique_ptr<model::PromptEncoder> prompt_encoder;
  std::unique_ptr<model::PromptAdapter> prompt_adapter;
  std::unique_ptr<model::TextDecoder> text;
  std::unique_ptr<model::PointHead> points;
  std::unique_ptr<model::MaskAdapter> mask_adapter;
  std::unique_ptr<model::MaskDecoder> mask_decoder;
  std::vector<float> dense_pe;  // (g, g, E) of the SAM grid
  std::unique_ptr<model::ProposalHead> proposals;
};

// Valid (h, w) of a top-left rectangle padding mask (official get_image_shape); INVALID_ARGUMENT when the mask is
// not such a rectangle (the canvas the pipeline builds always is).
void valid_rect(const float* mask, int size, int& h, int& w) {
  h = 0;
  w = 0;
  while (w < size && mask[w] > 0.5f) ++w;
  while (h < size && mask[static_cast<size_t>(h) * size] > 0.5f) ++h;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const bool in = y < h && x < w;
      PIXELLLM_CHECK((mask[static_cast<size_t>(y) * size + x] > 0.5f) == in, InvalidArgument,
                     "image encoder: padding_mask must be a top-left rectangle of ones");
    }
  PIXELLLM_CHECK(h >= 1 && w >= 1, InvalidImage, "image encoder: empty valid region");
}

class CpuImageEncoder final : public ImageEncoderBackend {
 public:
  explicit CpuImageEncoder(std::shared_ptr<Shared> s) : s_(std::move(s)) {}
  void encode(const float* images, const float* padding_mask, int batch, float* features,
              float* sam_features) override {
    Shared& s = *s_;
    const int S = s.image_size;
    const size_t px = static_cast<size_t>(S) * S;
    core::ScratchVector<float> sam_in(px * 3), eva_in(px * 3), eva_out(static_cast<size_t>(s.eva->grid()) * s.eva->grid() *
                                                           s.eva->out_channels());
    for (int b = 0; b < batch; ++b) {
      int h = 0, w = 0;
      valid_rect(padding_mask + px * b, S, h, w);
      const float* img = images + px * 3 * b;
      float* sam_out = sam_features + static_cast<size_t>(s.sam->output_size()) * b;
      std::lock_guard<std::mutex> lock(s.compute);
      model::normalize_image(img, S, w, h, s.sam->config().pixels, sam_in.data(), s.pool.get());
      model::normalize_image(img, S, w, h, s.eva->config().pixels, eva_in.data(), s.pool.get());
      core::run_pair(
          s.pool.get(), s.sam->matmul_flops(), s.eva->matmul_flops(),
          [&] { s.sam->forward(sam_in.data(), sam_out, s.pool.get()); },
          [&] { s.eva->forward(eva_in.data(), eva_out.data(), s.pool.get()); });
      s.fusion->forward(eva_out.data(), sam_out, features + static_cast<size_t>(s.fusion->output_floats()) * b,
                        s.pool.get());
    }
  }

 private:
  std::shared_ptr<Shared> s_;
};

class CpuPromptAdapter final : public PromptAdapterBackend {
 public:
  explicit CpuPromptAdapter(std::shared_ptr<Shared> s) : s_(std::move(s)) {}
  void visual_tokens(const float* features, int batch, const float* boxes, int prompts, float* tokens) override {
    Shared& s = *s_;
    const int G = s.fusion->output_size();
    const size_t per = static_cast<size_t>(s.visual_tokens) * s.prompt_adapter->token_dim();
    for (int b = 0; b < batch; ++b) {
      std::lock_guard<std::mutex> lock(s.compute);
      s.prompt_adapter->visual_tokens(*s.prompt_encoder, features + static_cast<size_t>(s.fusion->output_floats()) * b,
                                      G, G, boxes + static_cast<size_t>(b) * prompts * 4, prompts,
                                      tokens + per * prompts * b, s.pool.get());
    }
  }

 private:
  std::shared_ptr<Shared> s_;
};

class CpuMaskDecoder final : public MaskDecoderBackend {
 public:
  explicit CpuMaskDecoder(std::shared_ptr<Shared> s) : s_(std::move(s)) {}
  void decode(const float* sam_features, int batch, const float* boxes, int prompts, const float* visual_tokens,
              const float* text_hidden, int text_len, float* mask_logits, float* iou) override {
    Shared& s = *s_;
    PIXELLLM_CHECK(prompts >= 1 && text_len >= 1, InvalidArgument, "mask decoder: no prompts or no text states");
    const int g = s.sam->grid(), E = s.prompt_encoder->embed_dim(), M = s.mask_decoder->num_output_masks();
    const size_t mpx = static_cast<size_t>(4 * g) * (4 * g);
    const size_t vis = static_cast<size_t>(s.visual_tokens) * s.prompt_adapter->token_dim();
    const size_t txt = static_cast<size_t>(text_len) * s.text->hidden_size();
    std::vector<float> sparse(static_cast<size_t>(prompts) * 2 * E), masks(prompts * M * mpx), scores(prompts * M);
    for (int b = 0; b < batch; ++b) {
      const float* bx = boxes + static_cast<size_t>(b) * prompts * 4;
      for (int p = 0; p < prompts; ++p) s.prompt_encoder->embed_box(bx + 4 * p, sparse.data() + p * 2 * E);
      {
        std::lock_guard<std::mutex> lock(s.compute);
        s.mask_adapter->forward(sparse.data(), prompts, visual_tokens + vis * prompts * b, s.visual_tokens,
                                text_hidden + txt * prompts * b, text_len, sparse.data(), s.pool.get());
        s.mask_decoder->forward(sam_features + static_cast<size_t>(s.sam->output_size()) * b, g, g,
                                s.dense_pe.data(), sparse.data(), prompts, 2, s.prompt_encoder->no_mask_embed(),
                                masks.data(), scores.data(), s.pool.get());
      }
      for (int p = 0; p < prompts; ++p) {  // official decode_mask: the mask with the highest predicted IoU
        const float* sc = scores.data() + static_cast<size_t>(p) * M;
        const int best = static_cast<int>(std::max_element(sc, sc + M) - sc);
        const float* src = masks.data() + (static_cast<size_t>(p) * M + best) * mpx;
        std::copy(src, src + mpx, mask_logits + (static_cast<size_t>(b) * prompts + p) * mpx);
        iou[static_cast<size_t>(b) * prompts + p] = sc[best];
      }
    }
  }

 private:
  std::shared_ptr<Shared> s_;
};

class CpuProposalHead final : public ProposalHeadBackend {
 public:
  explicit CpuProposalHead(std::shared_ptr<Shared> s) : s_(std::move(s)) {}
  void proposals(const float* features, int batch, float* heatmap, float* box_regs) override {
    Shared& s = *s_;
    const int G = s.fusion->output_size();
    const size_t cells = static_cast<size_t>(G) * G;
    std::vector<float> scratch(s.proposals->scratch_floats(G, G));
    for (int b = 0; b < batch; ++b) {
      std::lock_guard<std::mutex> lock(s.compute);
      s.proposals->forward(features + static_cast<size_t>(s.fusion->output_floats()) * b, G, G,
                           heatmap + cells * b, box_regs + cells * 4 * b, scratch.data(), s.pool.get());
    }
  }

 private:
  std::shared_ptr<Shared> s_;
};

// Keeps Shared alive as long as the text decoder (sessions reference its decoder and mutex).
class CpuTextDecoderOwner final : public TextDecoderBackend {
 public:
  explicit CpuTextDecoderOwner(std::shared_ptr<Shared> s)
      : s_(std::move(s)), impl_(*s_->text, *s_->points, s_->visual_tokens, s_->compute) {}
  std::unique_ptr<DecoderSession> new_session(const DecoderLimits& limits) const override {
    return impl_.new_session(limits);
  }
  void forward(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text,
               int n_text, const float* image_hw, const DecoderOutputs& out) const override {
    impl_.forward(visual, rows, context, n_context, text, n_text, image_hw, out);
  }
  int threads() const { return s_->pool->size(); }

 private:
  std::shared_ptr<Shared> s_;
  CpuTextDecoder impl_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(const core::Json& config, std::shared_ptr<core::SafeTensors> weights,
                                            const CpuBackendOptions& options) {
  PIXELLLM_CHECK(weights != nullptr, InvalidArgument, "cpu backend: no weights");
  PIXELLLM_CHECK(options.encoder_weights != pixelllm::cpu::WeightFormat::bf16_dot || pixelllm::cpu::bf16_dot_supported(),
                 BackendUnavailable,
                 "encoderPrecision 'bf16' needs a CPU with AVX512-BF16 (vdpbf16ps); this one has none: use 'fp32'");
  auto shared = std::make_shared<Shared>(config, std::move(weights), options);
  auto backend = std::make_unique<Backend>();
  backend->name = "cpu";
  backend->image_encoder = std::make_unique<CpuImageEncoder>(shared);
  backend->prompt_adapter = std::make_unique<CpuPromptAdapter>(shared);
  backend->text_decoder = std::make_unique<CpuTextDecoderOwner>(shared);
  if (shared->mask_decoder) backend->mask_decoder = std::make_unique<CpuMaskDecoder>(shared);
  if (shared->proposals) backend->proposal_head = std::make_unique<CpuProposalHead>(shared);
  return backend;
}

int cpu_backend_threads(const Backend& backend) {
  const auto* owner = dynamic_cast<const CpuTextDecoderOwner*>(backend.text_decoder.get());
  return owner != nullptr ? owner->threads() : 0;
}

}  // namespace pixelllm::runtime::cpu
