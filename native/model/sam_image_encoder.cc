#include "model/sam_image_encoder.h"

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
#include "cpu/rel_pos.h"

namespace pixelllm::model {

using core::Tensor;

namespace {

int64_t windows_per_side(int64_t grid, int64_t window) { return (grid + window - 1) / window; }

// 3x3, stride 1, zero padding 1 im2col of (G, G, C) NHWC into (G*G, 9*C), column order (ky, kx, c).
void im2col_3x3(const float* src, int64_t G, int64_t C, float* col, core::ThreadPool* pool) {
  core::parallel_for(pool, G, 1, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = 0; x < G; ++x) {
        float* dst = col + (y * G + x) * 9 * C;
        for (int64_t ky = 0; ky < 3; ++ky)
          for (int64_t kx = 0; kx < 3; ++kx, dst += C) {
            const int64_t sy = y + ky - 1, sx = x + kx - 1;
            if (sy < 0 || sy >= G || sx < 0 || sx >= G)
              std::memset(dst, 0, sizeof(float) * C);
            else
              std::memcpy(dst, src + (sy * G + sx) * C, sizeof(float) * C);
          }
      }
  });
}

}  // namespace

bool SamImageEncoderConfig::is_global(int layer) const {
  return std::find(global_attn_indexes.begin(), global_attn_indexes.end(), layer) != global_attn_indexes.end();
}

SamImageEncoderConfig SamImageEncoderConfig::from_json(const core::JsonReader& s) {
  SamImageEncoderConfig c;
  c.image_size = static_cast<int>(s.get_int("image_size", 1, 16384));
  c.patch_size = static_cast<int>(s.get_int("patch_size", 1, 1024));
  c.hidden_size = static_cast<int>(s.get_int("hidden_size", 1, 65536));
  c.num_hidden_layers = static_cast<int>(s.get_int("num_hidden_layers", 0, 1024));
  c.num_attention_heads = static_cast<int>(s.get_int("num_attention_heads", 1, 1024));
  c.mlp_dim = static_cast<int>(s.get_int("mlp_dim", 1, 1 << 20));
  c.output_channels = static_cast<int>(s.get_int("output_channels", 1, 65536));
  c.qkv_bias = s.get_bool("qkv_bias", true);
  c.use_abs_pos = s.get_bool("use_abs_pos", true);
  c.use_rel_pos = s.get_bool("use_rel_pos", true);
  c.window_size = static_cast<int>(s.get_int("window_size", 0, 16384));
  for (int64_t i : s.get_int_array("global_attn_indexes", 1024, 0, 1023)) c.global_attn_indexes.push_back(int(i));
  c.layer_norm_eps = static_cast<float>(s.get_number("layer_norm_eps", 0.0, 1.0, 1e-6));
  const std::string act = s.get_string("hidden_act", 64, "gelu");
  c.pixels = PixelNormalization::from_config(s);

  const std::string where = s.path() + ": ";
  PIXELLLM_CHECK(act == "gelu", ConfigMismatch,
                 where + "hidden_act '" + act + "' is not supported (the official SAM MLP uses exact GELU, 'gelu')");
  PIXELLLM_CHECK(c.hidden_size % c.num_attention_heads == 0, ConfigMismatch,
                 where + "hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                     std::to_string(c.num_attention_heads));
  PIXELLLM_CHECK(c.image_size % c.patch_size == 0, ConfigMismatch,
                 where + "image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " +
                     std::to_string(c.patch_size));
  for (int g : c.global_attn_indexes)
    PIXELLLM_CHECK(g < c.num_hidden_layers, ConfigMismatch,
                   where + "global_attn_indexes entry " + std::to_string(g) + " >= num_hidden_layers");
  for (int i = 0; i < c.num_hidden_layers; ++i)
    PIXELLLM_CHECK(c.is_global(i) || c.window_size > 0, ConfigMismatch,
                   where + "layer " + std::to_string(i) + " is windowed but window_size is 0");
  return c;
}

SamImageEncoder::SamImageEncoder(const core::JsonReader& section, const core::SafeTensors& weights,
                                 const std::string& prefix, cpu::WeightFormat format)
    : cfg_(SamImageEncoderConfig::from_json(section)) {
  core::PrefixWeights w(weights, prefix);
  const int64_t D = cfg_.hidden_size, G = cfg_.grid(), P = cfg_.patch_size, C = cfg_.output_channels;
  const int64_t hd = cfg_.head_dim();

  Tensor pw = w.get("patch_embed.projection.weight", {D, 3, P, P});
  patch_w_ = cpu::patch_embed_weight(pw.data(), D, 3, P, P, format);
  patch_b_ = w.get("patch_embed.projection.bias", {D});
  if (cfg_.use_abs_pos) pos_embed_ = w.get("pos_embed", {1, G, G, D}).reshape({G * G, D});

  layers_.resize(static_cast<size_t>(cfg_.num_hidden_layers));
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
    Layer& L = layers_[static_cast<size_t>(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    L.window = cfg_.is_global(i) ? 0 : cfg_.window_size;
    L.ln1_w = w.get(p + "layer_norm1.weight", {D});
    L.ln1_b = w.get(p + "layer_norm1.bias", {D});
    L.ln2_w = w.get(p + "layer_norm2.weight", {D});
    L.ln2_b = w.get(p + "layer_norm2.bias", {D});
    L.qkv_w = cpu::PackedWeight::pack(w.get(p + "attn.qkv.weight", {3 * D, D}), format);
    if (cfg_.qkv_bias) L.qkv_b = w.get(p + "attn.qkv.bias", {3 * D});
    L.proj_w = cpu::PackedWeight::pack(w.get(p + "attn.proj.weight", {D, D}), format);
    L.proj_b = w.get(p + "attn.proj.bias", {D});
    if (cfg_.use_rel_pos) {
      const int64_t span = L.window ? L.window : G;
      const int64_t rows = 2 * span - 1;
      Tensor th = w.get(p + "attn.rel_pos_h", {rows, hd});
      Tensor tw = w.get(p + "attn.rel_pos_w", {rows, hd});
      // Gathered once: R[i, j] = table[i - j + span - 1], (span, span, head_dim).
      L.rel_h = Tensor::empty({span, span, hd});
      L.rel_w = Tensor::empty({span, span, hd});
      cpu::rel_pos_gather(th.data(), rows, span, span, hd, L.rel_h.data());
      cpu::rel_pos_gather(tw.data(), rows, span, span, hd, L.rel_w.data());
    }
    L.lin1_w = cpu::PackedWeight::pack(w.get(p + "mlp.lin1.weight", {cfg_.mlp_dim, D}), format);
    L.lin1_b = w.get(p + "mlp.lin1.bias", {cfg_.mlp_dim});
    L.lin2_w = cpu::PackedWeight::pack(w.get(p + "mlp.lin2.weight", {D, cfg_.mlp_dim}), format);
    L.lin2_b = w.get(p + "mlp.lin2.bias", {D});
  }
  neck_conv1_ = cpu::PackedWeight::pack(w.get("neck.conv1.weight", {C, D, 1, 1}).reshape({C, D}), format);
  neck_ln1_w_ = w.get("neck.layer_norm1.weight", {C});
  neck_ln1_b_ = w.get("neck.layer_norm1.bias", {C});
  Tensor c2 = w.get("neck.conv2.weight", {C, C, 3, 3});
  Tensor conv2 = Tensor::empty({C, 9 * C});
  cpu::patch_embed_pack_weight(c2.data(), C, C, 3, 3, conv2.data());
  neck_conv2_ = cpu::PackedWeight::pack(conv2, format);
  neck_ln2_w_ = w.get("neck.layer_norm2.weight", {C});
  neck_ln2_b_ = w.get("neck.layer_norm2.bias", {C});
  w.finish();
}


void SamImageEncoder::attention_block(const Layer& L, float* x, float* xn, float* qkv, float* attn, float* rel_h,
                                      float* rel_w, core::ThreadPool* pool) const {
  const int64_t D = cfg_.hidden_size, G = cfg_.grid(), N = G * G, H = cfg_.num_attention_heads;
  const int64_t hd = cfg_.head_dim();
  const float eps = cfg_.layer_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t ws = L.window ? L.window : G;         // attention span (window or whole grid)
  const int64_t nside = L.window ? windows_per_side(G, ws) : 1;
  const int64_t T = ws * ws;                          // tokens per window
  const int64_t rows = nside * nside * T;             // rows of the (padded, window-ordered) activations
  const float* qkv_bias = L.qkv_b.defined() && L.qkv_b.numel() ? L.qkv_b.data() : nullptr;
  // A window as large as the grid (the demo: 14 on 14) is one window in natural order: no partition copies.
  const bool partition = L.window && !(nside == 1 && ws == G);

  if (partition) {
    // The official pads the LN1 output with zero rows up to whole windows; a zero row's q/k/v is exactly the qkv
    // bias, so the GEMM runs on the N real rows only (natural order, into `attn`, which holds N * 3D floats) and
    // the window-ordered buffer gets the real rows scattered in and the bias (or zeros) in the padding rows.
    cpu::layer_norm(x, N, D, L.ln1_w.data(), L.ln1_b.data(), eps, xn, pool);
    cpu::linear(xn, N, L.qkv_w, qkv_bias, attn);
    core::parallel_for(pool, rows, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t win = r / T, t = r % T;
        const int64_t y = (win / nside) * ws + t / ws, xx = (win % nside) * ws + t % ws;
        float* dst = qkv + r * 3 * D;
        if (y < G && xx < G)
          std::memcpy(dst, attn + (y * G + xx) * 3 * D, sizeof(float) * 3 * D);
        else if (qkv_bias)
          std::memcpy(dst, qkv_bias, sizeof(float) * 3 * D);
        else
          std::memset(dst, 0, sizeof(float) * 3 * D);
      }
    });
  } else {
    cpu::layer_norm(x, N, D, L.ln1_w.data(), L.ln1_b.data(), eps, xn, pool);
    cpu::linear(xn, rows, L.qkv_w, qkv_bias, qkv);
  }

  for (int64_t win = 0; win < nside * nside; ++win) {
    const float* q = qkv + win * T * 3 * D;
    cpu::AttentionArgs a;
    a.q_len = T;
    a.kv_len = T;
    a.heads = H;
    a.head_dim = hd;
    a.q = q;
    a.ldq = 3 * D;
    a.k = q + D;
    a.ldk = 3 * D;
    a.v = q + 2 * D;
    a.ldv = 3 * D;
    a.out = attn + win * T * D;
    a.ldo = D;
    a.scale = scale;
    if (cfg_.use_rel_pos) {
      cpu::rel_pos_bias(q, 3 * D, H, ws, ws, hd, L.rel_h.data(), ws, L.rel_w.data(), ws, rel_h, rel_w, pool);
      a.bias.rel_h = rel_h;
      a.bias.rel_w = rel_w;
      a.bias.k_h = ws;
      a.bias.k_w = ws;
    }
    cpu::attention(a, pool);
  }

  if (partition) {
    // Un-partition the real rows (the padded queries' outputs are dropped), then x += proj on those N rows only.
    core::parallel_for(pool, N, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t y = i / G, xx = i % G;
        const int64_t r = ((y / ws) * nside + xx / ws) * T + (y % ws) * ws + xx % ws;
        std::memcpy(xn + i * D, attn + r * D, sizeof(float) * D);
      }
    });
    cpu::linear(xn, N, L.proj_w, L.proj_b.data(), x, /*accumulate=*/true);
  } else {
    cpu::linear(attn, N, L.proj_w, L.proj_b.data(), x, /*accumulate=*/true);
  }
}

void SamImageEncoder::forward(const float* image, float* out, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(image != nullptr && out != nullptr, InvalidArgument, "sam_image_encoder: null buffer");
  const int64_t D = cfg_.hidden_size, G = cfg_.grid(), N = G * G, H = cfg_.num_attention_heads;
  const int64_t S = cfg_.image_size, P = cfg_.patch_size, C = cfg_.output_channels, M = cfg_.mlp_dim;
  const float eps = cfg_.layer_norm_eps;

  // Largest padded row count and attention span over the layers.
  int64_t max_rows = N, max_T = N, max_span = G;
  for (const Layer& L : layers_)
    if (L.window) {
      const int64_t ns = windows_per_side(G, L.window);
      max_rows = std::max(max_rows, ns * ns * int64_t(L.window) * L.window);
      max_T = std::max(max_T, int64_t(L.window) * L.window);
      max_span = std::max(max_span, int64_t(L.window));
    }
  core::ScratchVector<float> x(static_cast<size_t>(N * D));
  core::ScratchVector<float> xn(static_cast<size_t>(max_rows * D));
  core::ScratchVector<float> qkv(static_cast<size_t>(max_rows * 3 * D));
  core::ScratchVector<float> attn(static_cast<size_t>(std::max(max_rows * D, N * 3 * D)));
  core::ScratchVector<float> rel(cfg_.use_rel_pos ? static_cast<size_t>(2 * H * max_T * max_span) : 0);
  core::ScratchVector<float> big(static_cast<size_t>(std::max(
      {N * M, N * 9 * C, cpu::patch_embed_scratch_size(1, S, S, 3, P, P)})));

  // Patch embedding (+ absolute position embedding).
  cpu::patch_embed(image, 1, S, S, 3, patch_w_, patch_b_.data(), P, P, big.data(), x.data(), pool);
  if (cfg_.use_abs_pos) {
    const float* pe = pos_embed_.data();
    float* xp = x.data();
    core::parallel_for(pool, N * D, 4096, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) xp[i] += pe[i];
    });
  }

  float* rel_h = cfg_.use_rel_pos ? rel.data() : nullptr;
  float* rel_w = cfg_.use_rel_pos ? rel.data() + H * max_T * max_span : nullptr;
  for (const Layer& L : layers_) {
    attention_block(L, x.data(), xn.data(), qkv.data(), attn.data(), rel_h, rel_w, pool);
    // MLP: x += lin2(gelu(lin1(LN2 x))).
    cpu::layer_norm(x.data(), N, D, L.ln2_w.data(), L.ln2_b.data(), eps, xn.data(), pool);
    cpu::linear(xn.data(), N, L.lin1_w, L.lin1_b.data(), big.data());
    cpu::gelu(big.data(), N * M, pool);
    cpu::linear(big.data(), N, L.lin2_w, L.lin2_b.data(), x.data(), /*accumulate=*/true);
  }

  // Neck: conv1x1 -> LN2d -> conv3x3 (pad 1) -> LN2d; LN2d over channels == LayerNorm of NHWC rows.
  core::ScratchVector<float> neck(static_cast<size_t>(N * C));
  float* n1 = neck.data();
  cpu::linear(x.data(), N, neck_conv1_, nullptr, n1);
  cpu::layer_norm(n1, N, C, neck_ln1_w_.data(), neck_ln1_b_.data(), eps, n1, pool);
  im2col_3x3(n1, G, C, big.data(), pool);
  cpu::linear(big.data(), N, neck_conv2_, nullptr, out);
  cpu::layer_norm(out, N, C, neck_ln2_w_.data(), neck_ln2_b_.data(), eps, out, pool);
}

double SamImageEncoder::matmul_flops() const {
  const auto& c = cfg_;
  const double D = c.hidden_size, G = c.grid(), N = G * G, M = c.mlp_dim, C = c.output_channels;
  double f = 2 * N * D * c.patch_size * c.patch_size * 3;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const double ws = c.is_global(i) ? G : c.window_size;
    const double nside = c.is_global(i) ? 1 : std::ceil(G / ws), T = ws * ws, rows = nside * nside * T;
    f += 2 * rows * D * 3 * D + nside * nside * 4 * T * T * D + 2 * rows * D * D + 4 * N * D * M;
  }
  return f + 2 * N * D * C + 2 * N * 9 * C * C;
}

}  // namespace pixelllm::model
