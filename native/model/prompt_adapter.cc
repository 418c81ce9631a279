#include "model/prompt_adapter.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/packed_linear.h"
#include "model/prompt_encoder.h"

namespace pixelllm::model {

using core::Tensor;

PromptAdapterConfig PromptAdapterConfig::from_json(const core::Json& config) {
  core::JsonReader r = core::JsonReader(config, "config.json").object("prompt_adapter");
  PromptAdapterConfig c;
  c.depth = static_cast<int>(r.get_int("depth", 0, 64));
  c.input_embedding_dim = static_cast<int>(r.get_int("input_embedding_dim", 1, 1 << 14));
  c.image_dim = static_cast<int>(r.get_int("image_dim", 1, 1 << 16));
  c.transformer_dim = static_cast<int>(r.get_int("transformer_dim", 1, 1 << 14));
  c.num_heads = static_cast<int>(r.get_int("num_heads", 1, 256, 8));
  c.mlp_dim = static_cast<int>(r.get_int("mlp_dim", 1, 1 << 16, 2048));
  c.num_outputs = static_cast<int>(r.get_int("num_outputs", 1, 4096));
  c.output_dim = static_cast<int>(r.get_int("output_dim", 1, 1 << 16));
  const std::string fuse = r.get_string("prompt_fuse_fn", 16, "sparse");
  PIXELLLM_CHECK(fuse == "sparse" || fuse == "dense", ConfigMismatch,
                 "config.json:prompt_adapter.prompt_fuse_fn: '" + fuse + "' not supported (sparse | dense)");
  c.dense_fuse = fuse == "dense";
  c.visual_projection_dim =
      r.has("visual_projection_dim") ? static_cast<int>(r.get_int("visual_projection_dim", 1, 1 << 16)) : 0;
  c.visual_projection_ln = r.get_bool("visual_projection_ln", true);
  return c;
}

PromptAdapter::PromptAdapter(const core::Json& config, const core::SafeTensors& weights)
    : PromptAdapter(PromptAdapterConfig::from_json(config), weights) {}

PromptAdapter::PromptAdapter(const PromptAdapterConfig& c, const core::SafeTensors& weights) : cfg_(c) {
  const int64_t D = c.transformer_dim, E = c.input_embedding_dim, O = c.output_dim, N = c.num_outputs;
  core::PrefixWeights w(weights, "prompt_adapter.");
  output_tokens_ = w.get("output_tokens.weight", {N, D});
  image_w_ = cpu::PackedWeight::pack(w.get("image_projection_mlp.weight", {D, c.image_dim}));
  image_b_ = w.get("image_projection_mlp.bias", {D});
  if (E != D) {
    prompt_w_ = cpu::PackedWeight::pack(w.get("prompt_embedding_projection_mlp.weight", {D, E}));
    prompt_b_ = w.get("prompt_embedding_projection_mlp.bias", {D});
    pe_w_ = cpu::PackedWeight::pack(w.get("image_pe_projection_mlp.weight", {D, E}));
    pe_b_ = w.get("image_pe_projection_mlp.bias", {D});
  }
  hyper_w_ = Tensor::empty({N, O, D});
  hyper_b_ = Tensor::empty({N, O});
  for (int64_t i = 0; i < N; ++i) {
    const std::string m = "output_hypernetworks_mlps." + std::to_string(i);
    Tensor wi = w.get(m + ".weight", {O, D}), bi = w.get(m + ".bias", {O});
    std::memcpy(hyper_w_.data() + i * O * D, wi.data(), wi.nbytes());
    std::memcpy(hyper_b_.data() + i * O, bi.data(), bi.nbytes());
  }
  dense_out_w_ = cpu::PackedWeight::pack(w.get("dense_output_mlp.weight", {O, D}));
  dense_out_b_ = w.get("dense_output_mlp.bias", {O});
  if (c.visual_projection_dim > 0) {
    const int64_t V = c.visual_projection_dim;
    proj_w_ = cpu::PackedWeight::pack(w.get("visual_projection.0.weight", {V, O}));
    proj_b_ = w.get("visual_projection.0.bias", {V});
    if (c.visual_projection_ln) {
      proj_ln_w_ = w.get("visual_projection.1.weight", {V});
      proj_ln_b_ = w.get("visual_projection.1.bias", {V});
    }
  }
  TwoWayTransformerConfig tc;
  tc.dim = c.transformer_dim;
  tc.depth = c.depth;
  tc.num_heads = c.num_heads;
  tc.mlp_dim = c.mlp_dim;
  transformer_ = std::make_unique<TwoWayTransformer>(tc, w, "transformer.");
  w.finish();
}

int64_t PromptAdapter::tokens_per_prompt(int64_t h, int64_t w) const noexcept {
  return cfg_.dense_fuse ? h * w : cfg_.num_outputs;
}

int PromptAdapter::token_dim() const noexcept {
  return cfg_.visual_projection_dim > 0 ? cfg_.visual_projection_dim : cfg_.output_dim;
}

void PromptAdapter::forward(const float* features, int64_t h, int64_t w, const float* sparse, int64_t prompts,
                            int64_t tokens, const float* dense_pe, const float* dense, float* out,
                            core::ThreadPool* pool) const {
  PIXELLLM_CHECK(h > 0 && w > 0 && prompts >= 0 && tokens >= 0, InvalidArgument,
                 "prompt_adapter: empty feature grid or negative prompt/token count");
  if (prompts == 0) return;
  const int64_t D = cfg_.transformer_dim, E = cfg_.input_embedding_dim, O = cfg_.output_dim;
  const int64_t HW = h * w, NO = cfg_.num_outputs, T = NO + tokens;
  const int64_t per = tokens_per_prompt(h, w), V = token_dim();
  const bool project = E != D;

  // Per call: src (HW, D), pe (HW, D), tokens/hs (T, D) x2, keys (HW, D), head out (per, O), transformer scratch.
  const size_t n_src = size_t(HW * D), n_tok = size_t(T * D), n_out = size_t(per * O);
  core::AlignedVector<float> buf(3 * n_src + 2 * n_tok + n_out + size_t(D) +
                                 transformer_->scratch_floats(T, HW));
  float* src = buf.data();
  float* pe = src + n_src;
  float* keys = pe + n_src;
  float* tok = keys + n_src;
  float* hs = tok + n_tok;
  float* head = hs + n_tok;
  float* dense_d = head + n_out;
  float* scratch = dense_d + D;

  // Image side, shared by every prompt: src = image_projection(features) + dense; pe (projected).
  if (project) {
    cpu::linear(dense, 1, prompt_w_, prompt_b_.data(), dense_d);
    cpu::linear(dense_pe, HW, pe_w_, pe_b_.data(), pe);
  } else {
    std::memcpy(dense_d, dense, size_t(D) * sizeof(float));
    std::memcpy(pe, dense_pe, n_src * sizeof(float));
  }
  cpu::linear(features, HW, image_w_, image_b_.data(), src);
  for (int64_t i = 0; i < HW; ++i)
    for (int64_t j = 0; j < D; ++j) src[i * D + j] += dense_d[j];

  std::memcpy(tok, output_tokens_.data(), size_t(NO * D) * sizeof(float));
  for (int64_t p = 0; p < prompts; ++p) {
    const float* sp = sparse + p * tokens * E;
    if (project) cpu::linear(sp, tokens, prompt_w_, prompt_b_.data(), tok + NO * D);
    else std::memcpy(tok + NO * D, sp, size_t(tokens * D) * sizeof(float));
    transformer_->forward(tok, T, src, pe, HW, hs, keys, scratch, pool);
    if (cfg_.dense_fuse) {
      cpu::linear(keys, HW, dense_out_w_, dense_out_b_.data(), head);
    } else {
      for (int64_t i = 0; i < NO; ++i)
        cpu::linear(hs + i * D, 1, D, hyper_w_.data() + i * O * D, hyper_b_.data() + i * O, O, head + i * O);
    }
    float* o = out + p * per * V;
    if (cfg_.visual_projection_dim > 0) {
      cpu::linear(head, per, proj_w_, proj_b_.data(), o);
      if (cfg_.visual_projection_ln) cpu::layer_norm(o, per, V, proj_ln_w_.data(), proj_ln_b_.data(), 1e-5f, o, pool);
    } else {
      std::memcpy(o, head, n_out * sizeof(float));
    }
  }
}

void PromptAdapter::visual_tokens(const PromptEncoder& encoder, const float* features, int64_t h, int64_t w,
                                  const float* boxes, int64_t prompts, float* out, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(encoder.embed_dim() == cfg_.input_embedding_dim, ConfigMismatch,
                 "prompt_adapter.input_embedding_dim " + std::to_string(cfg_.input_embedding_dim) +
                     " != prompt_encoder.embed_dim " + std::to_string(encoder.embed_dim()));
  const int64_t E = encoder.embed_dim(), T = encoder.adapter_tokens();
  core::AlignedVector<float> sparse(size_t(prompts * T * E)), pe(size_t(h * w * E));
  encoder.sparse_for_adapter(boxes, prompts, sparse.data());
  encoder.dense_pe(h, w, pe.data());
  forward(features, h, w, sparse.data(), prompts, T, pe.data(), encoder.no_mask_embed(), out, pool);
}

}  // namespace pixelllm::model
