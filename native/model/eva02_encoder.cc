#include "model/eva02_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/prefix_weights.h"
#include "core/thread_pool.h"
#include "cpu/activations.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/patch_embed.h"
#include "cpu/rope.h"

namespace pixelllm::model {

using core::Tensor;

namespace {

// Rows of the given (r_i, cols) tensors stacked into one (sum r_i, cols) tensor.
Tensor concat_rows(std::initializer_list<const Tensor*> parts, int64_t cols) {
  int64_t rows = 0;
  for (const Tensor* t : parts) rows += t->numel() / cols;
  Tensor out = Tensor::empty({rows, cols});
  float* dst = out.data();
  for (const Tensor* t : parts) {
    std::memcpy(dst, t->data(), t->nbytes());
    dst += t->numel();
  }
  return out;
}

}  // namespace

Eva02EncoderConfig Eva02EncoderConfig::from_json(const core::JsonReader& s) {
  Eva02EncoderConfig c;
  c.image_size = static_cast<int>(s.get_int("image_size", 1, 16384));
  c.patch_size = static_cast<int>(s.get_int("patch_size", 1, 1024));
  c.hidden_size = static_cast<int>(s.get_int("hidden_size", 1, 65536));
  c.num_hidden_layers = static_cast<int>(s.get_int("num_hidden_layers", 0, 1024));
  c.num_attention_heads = static_cast<int>(s.get_int("num_attention_heads", 1, 1024));
  c.mlp_hidden_size = static_cast<int>(s.get_int("mlp_hidden_size", 1, 1 << 20));
  c.use_abs_pos = s.get_bool("use_abs_pos", true);
  c.use_ln_pre = s.get_bool("use_ln_pre", false);
  c.use_ln_post = s.get_bool("use_ln_post", false);
  c.patch_bias = s.get_bool("patch_bias", true);
  c.layer_norm_eps = static_cast<float>(s.get_number("layer_norm_eps", 0.0, 1.0, 1e-6));
  c.ffn_layer_norm_eps = static_cast<float>(s.get_number("ffn_layer_norm_eps", 0.0, 1.0, 1e-5));
  c.rope_theta = s.get_number("rope_theta", 1.0, 1e12, 10000.0);
  c.pixels = PixelNormalization::from_config(s);

  const std::string where = s.path() + ": ";
  PIXELLLM_CHECK(c.patch_size <= c.image_size, ConfigMismatch,
                 where + "patch_size " + std::to_string(c.patch_size) + " exceeds image_size " +
                     std::to_string(c.image_size));
  PIXELLLM_CHECK(c.hidden_size % c.num_attention_heads == 0 && c.head_dim() % 4 == 0, ConfigMismatch,
                 where + "head dim hidden_size/num_attention_heads = " + std::to_string(c.hidden_size) + "/" +
                     std::to_string(c.num_attention_heads) + " must be an integer multiple of 4 (2-D RoPE)");
  return c;
}

Eva02Encoder::Eva02Encoder(const core::JsonReader& section, const core::SafeTensors& weights,
                           const std::string& prefix, cpu::WeightFormat format)
    : cfg_(Eva02EncoderConfig::from_json(section)) {
  core::PrefixWeights w(weights, prefix);
  const int64_t D = cfg_.hidden_size, G = cfg_.grid(), P = cfg_.patch_size, Hm = cfg_.mlp_hidden_size;
  const int64_t hd = cfg_.head_dim();

  Tensor pw = w.get("patch_embed.proj.weight", {D, 3, P, P});
  patch_w_ = cpu::patch_embed_weight(pw.data(), D, 3, P, P, format);
  if (cfg_.patch_bias) patch_b_ = w.get("patch_embed.proj.bias", {D});
  cls_token_ = w.get("cls_token", {1, 1, D}).reshape({D});
  if (cfg_.use_abs_pos) pos_embed_ = w.get("pos_embed", {1, 1 + G * G, D}).reshape({1 + G * G, D});
  if (cfg_.use_ln_pre) {
    ln_pre_w_ = w.get("ln_pre.weight", {D});
    ln_pre_b_ = w.get("ln_pre.bias", {D});
  }
  Tensor zeros = Tensor::zeros({D});
  blocks_.resize(static_cast<size_t>(cfg_.num_hidden_layers));
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
    Block& B = blocks_[static_cast<size_t>(i)];
    const std::string p = "blocks." + std::to_string(i) + ".";
    B.norm1_w = w.get(p + "norm1.weight", {D});
    B.norm1_b = w.get(p + "norm1.bias", {D});
    B.norm2_w = w.get(p + "norm2.weight", {D});
    B.norm2_b = w.get(p + "norm2.bias", {D});
    Tensor q = w.get(p + "attn.q_proj.weight", {D, D});
    Tensor k = w.get(p + "attn.k_proj.weight", {D, D});
    Tensor v = w.get(p + "attn.v_proj.weight", {D, D});
    Tensor qb = w.get(p + "attn.q_bias", {D});
    Tensor vb = w.get(p + "attn.v_bias", {D});
    B.qkv_w = cpu::PackedWeight::pack(concat_rows({&q, &k, &v}, D), format);
    B.qkv_b = concat_rows({&qb, &zeros, &vb}, D).reshape({3 * D});  // k has no bias
    B.proj_w = cpu::PackedWeight::pack(w.get(p + "attn.proj.weight", {D, D}), format);
    B.proj_b = w.get(p + "attn.proj.bias", {D});
    Tensor w1 = w.get(p + "mlp.w1.weight", {Hm, D});
    Tensor w2 = w.get(p + "mlp.w2.weight", {Hm, D});
    Tensor b1 = w.get(p + "mlp.w1.bias", {Hm});
    Tensor b2 = w.get(p + "mlp.w2.bias", {Hm});
    B.w12_w = cpu::PackedWeight::pack(concat_rows({&w1, &w2}, D), format);
    B.w12_b = concat_rows({&b1, &b2}, Hm).reshape({2 * Hm});
    B.ffn_ln_w = w.get(p + "mlp.ffn_ln.weight", {Hm});
    B.ffn_ln_b = w.get(p + "mlp.ffn_ln.bias", {Hm});
    B.w3_w = cpu::PackedWeight::pack(w.get(p + "mlp.w3.weight", {D, Hm}), format);
    B.w3_b = w.get(p + "mlp.w3.bias", {D});
  }
  if (cfg_.use_ln_post) {
    ln_post_w_ = w.get("ln_post.weight", {D});
    ln_post_b_ = w.get("ln_post.bias", {D});
  }
  w.finish();
  // Official rope: pt_seq_len = processed image size // patch = G, ft_seq_len = pt_seq_len.
  rope_cos_ = Tensor::empty({G * G, hd});
  rope_sin_ = Tensor::empty({G * G, hd});
  cpu::rope2d_tables(G, G, hd, double(G), double(G), cfg_.rope_theta, rope_cos_.data(), rope_sin_.data());
}

void Eva02Encoder::forward(const float* image, float* out, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(image != nullptr && out != nullptr, InvalidArgument, "eva02_encoder: null buffer");
  const int64_t D = cfg_.hidden_size, G = cfg_.grid(), N = G * G, T = N + 1, H = cfg_.num_attention_heads;
  const int64_t S = cfg_.image_size, P = cfg_.patch_size, Hm = cfg_.mlp_hidden_size, hd = cfg_.head_dim();
  const float eps = cfg_.layer_norm_eps;

  core::ScratchVector<float> x(static_cast<size_t>(T * D));
  core::ScratchVector<float> xn(static_cast<size_t>(T * D));
  core::ScratchVector<float> qkv(static_cast<size_t>(T * 3 * D));
  core::ScratchVector<float> big(static_cast<size_t>(
      std::max(T * 2 * Hm, cpu::patch_embed_scratch_size(1, S, S, 3, P, P))));
  core::ScratchVector<float> gated(static_cast<size_t>(T * Hm));

  // [cls, patches] + pos_embed
  std::memcpy(x.data(), cls_token_.data(), sizeof(float) * D);
  cpu::patch_embed(image, 1, S, S, 3, patch_w_, cfg_.patch_bias ? patch_b_.data() : nullptr, P, P, big.data(),
                   x.data() + D, pool);
  if (cfg_.use_abs_pos) {
    const float* pe = pos_embed_.data();
    float* xp = x.data();
    core::parallel_for(pool, T * D, 4096, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) xp[i] += pe[i];
    });
  }
  if (cfg_.use_ln_pre) cpu::layer_norm(x.data(), T, D, ln_pre_w_.data(), ln_pre_b_.data(), eps, x.data(), pool);

  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (const Block& B : blocks_) {
    cpu::layer_norm(x.data(), T, D, B.norm1_w.data(), B.norm1_b.data(), eps, xn.data(), pool);
    cpu::linear(xn.data(), T, B.qkv_w, B.qkv_b.data(), qkv.data());
    // RoPE on q and k of the patch tokens (rows 1..N); the class token (row 0) is not rotated.
    cpu::rope_apply(qkv.data() + 3 * D, N, H, hd, 3 * D, rope_cos_.data(), rope_sin_.data(), pool);
    cpu::rope_apply(qkv.data() + 3 * D + D, N, H, hd, 3 * D, rope_cos_.data(), rope_sin_.data(), pool);
    cpu::AttentionArgs a;
    a.q_len = T;
    a.kv_len = T;
    a.heads = H;
    a.head_dim = hd;
    a.q = qkv.data();
    a.ldq = 3 * D;
    a.k = qkv.data() + D;
    a.ldk = 3 * D;
    a.v = qkv.data() + 2 * D;
    a.ldv = 3 * D;
    a.out = xn.data();
    a.ldo = D;
    a.scale = scale;
    cpu::attention(a, pool);
    cpu::linear(xn.data(), T, B.proj_w, B.proj_b.data(), x.data(), /*accumulate=*/true);

    cpu::layer_norm(x.data(), T, D, B.norm2_w.data(), B.norm2_b.data(), eps, xn.data(), pool);
    cpu::linear(xn.data(), T, B.w12_w, B.w12_b.data(), big.data());
    const float* h12 = big.data();
    float* g = gated.data();
    // SwiGLU and the FFN LayerNorm in one pass per row (the row is still in cache for the norm).
    core::parallel_for(pool, T, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* gr = g + r * Hm;
        cpu::silu_mul(h12 + r * 2 * Hm, h12 + r * 2 * Hm + Hm, gr, Hm);
        cpu::layer_norm(gr, 1, Hm, B.ffn_ln_w.data(), B.ffn_ln_b.data(), cfg_.ffn_layer_norm_eps, gr);
      }
    });
    cpu::linear(g, T, B.w3_w, B.w3_b.data(), x.data(), /*accumulate=*/true);
  }

  // Drop the class token; ln_post (a per-token LayerNorm) writes straight into the caller's buffer.
  if (cfg_.use_ln_post)
    cpu::layer_norm(x.data() + D, N, D, ln_post_w_.data(), ln_post_b_.data(), eps, out, pool);
  else
    std::memcpy(out, x.data() + D, sizeof(float) * N * D);
}

double Eva02Encoder::matmul_flops() const {
  const auto& c = cfg_;
  const double D = c.hidden_size, G = c.grid(), T = G * G + 1, Hm = c.mlp_hidden_size;
  return 2 * G * G * D * c.patch_size * c.patch_size * 3 +
         c.num_hidden_layers * (2 * T * D * 3 * D + 4 * T * T * D + 2 * T * D * D + 2 * T * D * 2 * Hm + 2 * T * Hm * D);
}

}  // namespace pixelllm::model
