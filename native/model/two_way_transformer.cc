#include "model/two_way_transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "cpu/activations.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/packed_linear.h"

namespace pixelllm::model {

using core::Tensor;

void TwoWayTransformerConfig::validate(const std::string& what) const {
  PIXELLLM_CHECK(dim > 0 && depth >= 0 && num_heads > 0 && mlp_dim > 0 && downsample > 0, ConfigMismatch,
                 what + ": two-way transformer sizes must be positive");
  PIXELLLM_CHECK(dim % num_heads == 0 && dim % downsample == 0 && (dim / downsample) % num_heads == 0,
                 ConfigMismatch,
                 what + ": " + std::to_string(num_heads) + " heads do not divide the attention widths " +
                     std::to_string(dim) + " and " + std::to_string(dim) + "/" + std::to_string(downsample));
}

struct TwoWayTransformer::Buffers {
  float *qp, *kp, *vp, *att, *qpe, *kpe, *mlp;
};

TwoWayTransformer::Attention TwoWayTransformer::load_attention(core::PrefixWeights& w, const std::string& name,
                                                               int internal) const {
  Attention a;
  const int64_t D = cfg_.dim, I = internal;
  a.internal = internal;
  a.q_w = cpu::PackedWeight::pack(w.get(name + ".q_proj.weight", {I, D}));
  a.q_b = w.get(name + ".q_proj.bias", {I});
  a.k_w = cpu::PackedWeight::pack(w.get(name + ".k_proj.weight", {I, D}));
  a.k_b = w.get(name + ".k_proj.bias", {I});
  a.v_w = cpu::PackedWeight::pack(w.get(name + ".v_proj.weight", {I, D}));
  a.v_b = w.get(name + ".v_proj.bias", {I});
  a.o_w = cpu::PackedWeight::pack(w.get(name + ".out_proj.weight", {D, I}));
  a.o_b = w.get(name + ".out_proj.bias", {D});
  return a;
}

TwoWayTransformer::TwoWayTransformer(const TwoWayTransformerConfig& c, core::PrefixWeights& w, const std::string& p)
    : cfg_(c) {
  c.validate(w.prefix() + p);
  const int64_t D = c.dim, M = c.mlp_dim;
  const int cross = c.dim / c.downsample;
  for (int i = 0; i < c.depth; ++i) {
    const std::string l = p + "layers." + std::to_string(i);
    Layer L;
    L.self_attn = load_attention(w, l + ".self_attn", c.dim);
    L.t2i = load_attention(w, l + ".cross_attn_token_to_image", cross);
    L.i2t = load_attention(w, l + ".cross_attn_image_to_token", cross);
    for (int j = 0; j < 4; ++j) {
      L.ln_w[j] = w.get(l + ".layer_norm" + std::to_string(j + 1) + ".weight", {D});
      L.ln_b[j] = w.get(l + ".layer_norm" + std::to_string(j + 1) + ".bias", {D});
    }
    L.lin1_w = cpu::PackedWeight::pack(w.get(l + ".mlp.lin1.weight", {M, D}));
    L.lin1_b = w.get(l + ".mlp.lin1.bias", {M});
    L.lin2_w = cpu::PackedWeight::pack(w.get(l + ".mlp.lin2.weight", {D, M}));
    L.lin2_b = w.get(l + ".mlp.lin2.bias", {D});
    layers_.push_back(std::move(L));
  }
  PIXELLLM_CHECK(!w.has(p + "layers." + std::to_string(c.depth) + ".layer_norm1.weight"), ConfigMismatch,
                 w.prefix() + p + ": the weights hold more than the configured " + std::to_string(c.depth) +
                     " layers");
  final_ = load_attention(w, p + "final_attn_token_to_image", cross);
  final_ln_w_ = w.get(p + "layer_norm_final_attn.weight", {D});
  final_ln_b_ = w.get(p + "layer_norm_final_attn.bias", {D});
}

size_t TwoWayTransformer::scratch_floats(int64_t tokens, int64_t keys) const noexcept {
  const size_t D = size_t(cfg_.dim), rows = size_t(std::max(tokens, keys));
  return 4 * rows * D + size_t(tokens) * D + size_t(keys) * D + size_t(tokens) * size_t(cfg_.mlp_dim);
}

void TwoWayTransformer::attend(const Attention& a, const float* xq, int64_t nq, const float* xk, const float* xv,
                               int64_t nk, float* out, bool accumulate, const Buffers& b,
                               core::ThreadPool* pool) const {
  const int64_t I = a.internal;
  cpu::linear(xq, nq, a.q_w, a.q_b.data(), b.qp);
  cpu::linear(xk, nk, a.k_w, a.k_b.data(), b.kp);
  cpu::linear(xv, nk, a.v_w, a.v_b.data(), b.vp);
  cpu::AttentionArgs args;
  args.q_len = nq;
  args.kv_len = nk;
  args.heads = cfg_.num_heads;
  args.head_dim = I / cfg_.num_heads;
  args.q = b.qp;
  args.ldq = I;
  args.k = b.kp;
  args.ldk = I;
  args.v = b.vp;
  args.ldv = I;
  args.out = b.att;
  args.ldo = I;
  args.scale = 1.0f / std::sqrt(static_cast<float>(args.head_dim));
  cpu::attention(args, pool);
  cpu::linear(b.att, nq, a.o_w, a.o_b.data(), out, accumulate);
}

void TwoWayTransformer::forward(const float* P, int64_t T, const float* image, const float* E, int64_t N, float* q,
                                float* k, float* scratch, core::ThreadPool* pool) const {
  PIXELLLM_CHECK(T > 0 && N > 0, InvalidArgument, "two-way transformer: needs at least one token and one key");
  const int64_t D = cfg_.dim;
  const int64_t rows = std::max(T, N);
  Buffers b;
  b.qp = scratch;
  b.kp = b.qp + rows * D;
  b.vp = b.kp + rows * D;
  b.att = b.vp + rows * D;
  b.qpe = b.att + rows * D;
  b.kpe = b.qpe + T * D;
  b.mlp = b.kpe + N * D;
  const float eps = cfg_.layer_norm_eps;
  auto add = [](const float* x, const float* y, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] + y[i];
  };
  auto with_pe = [&](const float* x, const float* pe, int64_t n, float* out) -> const float* {
    if (!pe) return x;
    add(x, pe, n, out);
    return out;
  };

  std::memcpy(q, P, size_t(T * D) * sizeof(float));
  std::memcpy(k, image, size_t(N * D) * sizeof(float));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    if (i == 0) {  // skip_first_layer_pe: no residual, no positional term
      std::memcpy(b.qpe, q, size_t(T * D) * sizeof(float));
      attend(L.self_attn, b.qpe, T, b.qpe, b.qpe, T, q, false, b, pool);
    } else {
      add(q, P, T * D, b.qpe);
      attend(L.self_attn, b.qpe, T, b.qpe, q, T, q, true, b, pool);
    }
    cpu::layer_norm(q, T, D, L.ln_w[0].data(), L.ln_b[0].data(), eps, q, pool);

    add(q, P, T * D, b.qpe);
    const float* kpe = with_pe(k, E, N * D, b.kpe);
    attend(L.t2i, b.qpe, T, kpe, k, N, q, true, b, pool);
    cpu::layer_norm(q, T, D, L.ln_w[1].data(), L.ln_b[1].data(), eps, q, pool);

    cpu::linear(q, T, L.lin1_w, L.lin1_b.data(), b.mlp);
    cpu::relu(b.mlp, T * cfg_.mlp_dim, pool);
    cpu::linear(b.mlp, T, L.lin2_w, L.lin2_b.data(), q, true);
    cpu::layer_norm(q, T, D, L.ln_w[2].data(), L.ln_b[2].data(), eps, q, pool);

    add(q, P, T * D, b.qpe);
    // k + E is the query and k itself is updated: keep k + E in its own buffer even without a PE.
    if (!E) std::memcpy(b.kpe, k, size_t(N * D) * sizeof(float));
    else add(k, E, N * D, b.kpe);
    attend(L.i2t, b.kpe, N, b.qpe, q, T, k, true, b, pool);
    cpu::layer_norm(k, N, D, L.ln_w[3].data(), L.ln_b[3].data(), eps, k, pool);
  }
  add(q, P, T * D, b.qpe);
  const float* kpe = with_pe(k, E, N * D, b.kpe);
  attend(final_, b.qpe, T, kpe, k, N, q, true, b, pool);
  cpu::layer_norm(q, T, D, final_ln_w_.data(), final_ln_b_.data(), eps, q, pool);
}

void TwoWayTransformer::forward(const float* P, int64_t T, const float* image, const float* E, int64_t N, float* q,
                                float* k, core::ThreadPool* pool) const {
  core::AlignedVector<float> scratch(scratch_floats(T, N));
  forward(P, T, image, E, N, q, k, scratch.data(), pool);
}

}  // namespace pixelllm::model
