#include "model/mask_adapter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"

namespace pixelllm::model {

MaskAdapterConfig MaskAdapterConfig::from_json(const core::Json& config) {
  core::JsonReader r = core::JsonReader(config, "config.json").object("mask_adapter");
  MaskAdapterConfig c;
  c.depth = static_cast<int>(r.get_int("depth", 0, 64));
  c.transformer_dim = static_cast<int>(r.get_int("transformer_dim", 1, 1 << 14));
  c.num_heads = static_cast<int>(r.get_int("num_heads", 1, 256, 8));
  c.mlp_dim = static_cast<int>(r.get_int("mlp_dim", 1, 1 << 16, 2048));
  c.num_outputs = static_cast<int>(r.get_int("num_outputs", 1, 64));
  c.gating = r.get_bool("gating", true);
  c.visual_dim = static_cast<int>(r.get_int("visual_dim", 1, 1 << 16));
  c.text_dim = static_cast<int>(r.get_int("text_dim", 1, 1 << 16));
  return c;
}

MaskAdapter::MaskAdapter(const core::Json& config, const core::SafeTensors& weights)
    : MaskAdapter(MaskAdapterConfig::from_json(config), weights) {}

MaskAdapter::MaskAdapter(const MaskAdapterConfig& c, const core::SafeTensors& weights) : cfg_(c) {
  const int64_t D = c.transformer_dim, O = c.num_outputs;
  core::PrefixWeights w(weights, "mask_adapter.");
  output_tokens_ = w.get("output_tokens.weight", {O, D});
  if (c.gating) {
    gate_ = w.get("alpha_output.weight", {O, D});
    for (int64_t i = 0; i < gate_.numel(); ++i) gate_.data()[i] = std::tanh(gate_.data()[i]);
  }
  v_ln_w_ = w.get("visual_projection_mlp.layer_norm.weight", {c.visual_dim});
  v_ln_b_ = w.get("visual_projection_mlp.layer_norm.bias", {c.visual_dim});
  v_w_ = w.get("visual_projection_mlp.layers.0.weight", {D, c.visual_dim});
  v_b_ = w.get("visual_projection_mlp.layers.0.bias", {D});
  t_ln_w_ = w.get("textual_projection_mlp.layer_norm.weight", {c.text_dim});
  t_ln_b_ = w.get("textual_projection_mlp.layer_norm.bias", {c.text_dim});
  t_w_ = w.get("textual_projection_mlp.layers.0.weight", {D, c.text_dim});
  t_b_ = w.get("textual_projection_mlp.layers.0.bias", {D});
  TwoWayTransformerConfig tc;
  tc.dim = c.transformer_dim;
  tc.depth = c.depth;
  tc.num_heads = c.num_heads;
  tc.mlp_dim = c.mlp_dim;
  transformer_ = std::make_unique<TwoWayTransformer>(tc, w, "transformer.");
  w.finish();
}

void MaskAdapter::forward(const float* sparse, int64_t prompts, const float* visual, int64_t lv, const float* text,
                          int64_t lt, float* out, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(prompts >= 0 && lv >= 0 && lt >= 0 && lv + lt > 0, InvalidArgument,
                 "mask_adapter: needs at least one visual or text token per prompt");
  if (prompts == 0) return;
  const int64_t D = cfg_.transformer_dim, O = cfg_.num_outputs, L = lv + lt;
  const int64_t Dv = cfg_.visual_dim, Dt = cfg_.text_dim;
  const size_t n_norm = size_t(std::max(lv * Dv, lt * Dt));
  core::AlignedVector<float> buf(n_norm + 2 * size_t(L * D) + size_t(O * D) + transformer_->scratch_floats(O, L));
  float* norm = buf.data();
  float* seq = norm + n_norm;
  float* keys = seq + L * D;
  float* q = keys + L * D;
  float* scratch = q + O * D;
  for (int64_t p = 0; p < prompts; ++p) {
    if (lv > 0) {
      cpu::layer_norm(visual + p * lv * Dv, lv, Dv, v_ln_w_.data(), v_ln_b_.data(), 1e-6f, norm, pool);
      cpu::linear(norm, lv, Dv, v_w_.data(), v_b_.data(), D, seq);
    }
    if (lt > 0) {
      cpu::layer_norm(text + p * lt * Dt, lt, Dt, t_ln_w_.data(), t_ln_b_.data(), 1e-6f, norm, pool);
      cpu::linear(norm, lt, Dt, t_w_.data(), t_b_.data(), D, seq + lv * D);
    }
    transformer_->forward(output_tokens_.data(), O, seq, nullptr, L, q, keys, scratch, pool);
    const float* sp = sparse + p * O * D;
    float* o = out + p * O * D;
    for (int64_t i = 0; i < O * D; ++i) o[i] = (cfg_.gating ? gate_.data()[i] * q[i] : q[i]) + sp[i];
  }
}

}  // namespace pixelllm::model
