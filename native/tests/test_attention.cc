// cpu: attention (tiled, masks, bias, causal, KV length != Q length), EVA02 2-D RoPE, SAM decomposed rel-pos.
#include <cmath>
#include <limits>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/rel_pos.h"
#include "cpu/rope.h"
#include "runtime/kv_cache.h"
#include "tests/test.h"

using namespace pixelllm;
using test::Rng;

namespace {

struct Case {
  int64_t tq, tk, heads, dim;
  bool causal;
  int64_t offset;
  int bias_mode;  // 0 none, 1 shared (tq, tk), 2 per head, 3 key-mask row broadcast (ld = 0)
};

// Naive double attention with the same conventions as cpu::attention.
std::vector<double> naive(const Case& c, const std::vector<float>& q, int64_t ldq, const std::vector<float>& k,
                          int64_t ldk, const std::vector<float>& v, int64_t ldv, float scale, const float* bias,
                          int64_t bias_ld, int64_t bias_hs, const float* rel_h, const float* rel_w, int64_t kh,
                          int64_t kw) {
  std::vector<double> out(c.tq * c.heads * c.dim, 0.0);
  std::vector<double> s(c.tk);
  for (int64_t h = 0; h < c.heads; ++h)
    for (int64_t i = 0; i < c.tq; ++i) {
      double m = -INFINITY;
      for (int64_t j = 0; j < c.tk; ++j) {
        double d = 0;
        for (int64_t e = 0; e < c.dim; ++e) d += double(q[i * ldq + h * c.dim + e]) * k[j * ldk + h * c.dim + e];
        d *= scale;
        if (bias) d += bias[h * bias_hs + i * bias_ld + j];
        if (rel_h) d += rel_h[(h * c.tq + i) * kh + j / kw] + rel_w[(h * c.tq + i) * kw + j % kw];
        if (c.causal && j > i + c.offset) d = -INFINITY;
        s[j] = d;
        m = std::max(m, d);
      }
      if (m == -INFINITY) continue;
      double z = 0;
      for (int64_t j = 0; j < c.tk; ++j) z += (s[j] = std::exp(s[j] - m));
      for (int64_t j = 0; j < c.tk; ++j)
        for (int64_t e = 0; e < c.dim; ++e) out[(i * c.heads + h) * c.dim + e] += s[j] / z * v[j * ldv + h * c.dim + e];
    }
  return out;
}

}  // namespace

TEST(attention_matches_naive) {
  Rng rng(11);
  core::ThreadPool pool(3);
  const Case cases[] = {
      {1, 1, 1, 8, false, 0, 0},      {5, 9, 2, 16, false, 0, 1},    {70, 70, 3, 24, false, 0, 0},
      {70, 70, 2, 32, true, 0, 1},    {1, 131, 4, 64, true, 130, 3}, {33, 200, 2, 64, true, 167, 2},
      {100, 37, 2, 12, false, 0, 2},  {65, 129, 1, 40, false, 0, 3}, {64, 64, 12, 64, false, 0, 0},
      // SAM window (head dim 80: 32 + 32 + 16 columns), EVA02 length (23 key panels), a head dim with a scalar
      // tail and a negative causal offset (the first rows see no key: zero rows), the unpacked few-query path
      // with a per-head bias, a 16-key last panel.
      {196, 196, 2, 80, false, 0, 0}, {730, 730, 1, 64, false, 0, 0}, {40, 40, 2, 20, true, -5, 1},
      {3, 300, 2, 48, false, 0, 2},   {7, 208, 3, 32, false, 0, 3},
  };
  for (const Case& c : cases) {
    const int64_t w = c.heads * c.dim;
    // q, k, v as slices of a fused (T, 3W) buffer for Q and a separate fused (Tk, 2W + 5) buffer for K/V.
    auto q = rng.vec(c.tq * 3 * w, -2, 2);
    auto kv = rng.vec(c.tk * (2 * w + 5), -2, 2);
    std::vector<float> bias;
    int64_t ld = 0, hs = 0;
    if (c.bias_mode == 1) { bias = rng.vec(c.tq * c.tk, -3, 3); ld = c.tk; }
    if (c.bias_mode == 2) { bias = rng.vec(c.heads * c.tq * c.tk, -3, 3); ld = c.tk; hs = c.tq * c.tk; }
    if (c.bias_mode == 3) {
      bias.assign(c.tk, 0.f);
      for (int64_t j = 0; j < c.tk; j += 3) bias[j] = -INFINITY;  // padded keys
      ld = 0;
    }
    cpu::AttentionArgs a;
    a.q_len = c.tq; a.kv_len = c.tk; a.heads = c.heads; a.head_dim = c.dim;
    a.q = q.data() + w; a.ldq = 3 * w;
    a.k = kv.data(); a.ldk = 2 * w + 5;
    a.v = kv.data() + w + 5; a.ldv = 2 * w + 5;
    std::vector<float> out(c.tq * (w + 2), 99.f);
    a.out = out.data(); a.ldo = w + 2;
    a.scale = 1.0f / std::sqrt(float(c.dim));
    a.causal = c.causal; a.causal_offset = c.offset;
    a.bias.data = bias.empty() ? nullptr : bias.data(); a.bias.ld = ld; a.bias.head_stride = hs;
    cpu::attention(a, c.tq > 8 ? &pool : nullptr);
    std::vector<float> qs(q.begin() + w, q.end());
    std::vector<float> vs(kv.begin() + w + 5, kv.end());
    auto ref = naive(c, qs, 3 * w, kv, 2 * w + 5, vs, 2 * w + 5, a.scale, a.bias.data, ld, hs, nullptr, nullptr, 0, 1);
    std::vector<float> dense(c.tq * w);
    for (int64_t i = 0; i < c.tq; ++i)
      for (int64_t e = 0; e < w; ++e) dense[i * w + e] = out[i * (w + 2) + e];
    CHECK_REL_L2(dense.data(), ref.data(), c.tq * w, 1e-5);
    CHECK_EQ(out[w], 99.f);  // padding columns untouched
  }
}

TEST(attention_fully_masked_rows_are_zero) {
  std::vector<float> q(2 * 4, 1.f), k(3 * 4, 1.f), v(3 * 4, 2.f), out(2 * 4, 5.f);
  std::vector<float> bias = {0, 0, 0, -INFINITY, -INFINITY, -INFINITY};
  cpu::AttentionArgs a;
  a.q_len = 2; a.kv_len = 3; a.heads = 1; a.head_dim = 4;
  a.q = q.data(); a.ldq = 4; a.k = k.data(); a.ldk = 4; a.v = v.data(); a.ldv = 4; a.out = out.data(); a.ldo = 4;
  a.bias.data = bias.data(); a.bias.ld = 3;
  cpu::attention(a);
  CHECK_NEAR(out[0], 2.0, 1e-6);
  for (int e = 4; e < 8; ++e) CHECK_EQ(out[e], 0.f);
  a.ldq = 3;
  CHECK_THROWS_CODE(cpu::attention(a), InvalidArgument, "row stride");
}

TEST(attention_with_sam_rel_pos) {
  Rng rng(12);
  // A 14x14 window (SAM tiny) and a non-square 5x7 grid; rel-pos tables of 2*max-1 rows.
  for (auto [gh, gw] : {std::pair<int64_t, int64_t>{14, 14}, {5, 7}}) {
    const int64_t heads = 2, C = 16, T = gh * gw, w = heads * C;
    auto q = rng.vec(T * w), k = rng.vec(T * w), v = rng.vec(T * w);
    const int64_t lh = 2 * gh - 1, lw = 2 * gw - 1;
    auto th = rng.vec(lh * C), tw = rng.vec(lw * C);
    std::vector<float> rh(gh * gh * C), rw(gw * gw * C);
    cpu::rel_pos_gather(th.data(), lh, gh, gh, C, rh.data());
    cpu::rel_pos_gather(tw.data(), lw, gw, gw, C, rw.data());
    // gather = table[i - j + k - 1]
    for (int64_t i = 0; i < gh; ++i)
      for (int64_t j = 0; j < gh; ++j) CHECK_EQ(rh[(i * gh + j) * C + 3], th[(i - j + gh - 1) * C + 3]);
    std::vector<float> rel_h(heads * T * gh), rel_w(heads * T * gw);
    core::ThreadPool pool(2);
    cpu::rel_pos_bias(q.data(), w, heads, gh, gw, C, rh.data(), gh, rw.data(), gw, rel_h.data(), rel_w.data(), &pool);
    // naive einsum bhwc,hkc->bhwk with the unscaled q
    double worst = 0;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t ky = 0; ky < gh; ++ky) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c) s += double(q[i * w + h * C + c]) * rh[((i / gw) * gh + ky) * C + c];
          worst = std::max(worst, std::fabs(s - rel_h[(h * T + i) * gh + ky]));
        }
        for (int64_t kx = 0; kx < gw; ++kx) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c) s += double(q[i * w + h * C + c]) * rw[((i % gw) * gw + kx) * C + c];
          worst = std::max(worst, std::fabs(s - rel_w[(h * T + i) * gw + kx]));
        }
      }
    CHECK(worst < 1e-5);
    cpu::AttentionArgs a;
    a.q_len = T; a.kv_len = T; a.heads = heads; a.head_dim = C;
    a.q = q.data(); a.ldq = w; a.k = k.data(); a.ldk = w; a.v = v.data(); a.ldv = w;
    std::vector<float> out(T * w);
    a.out = out.data(); a.ldo = w; a.scale = 1.0f / std::sqrt(float(C));
    a.bias.rel_h = rel_h.data(); a.bias.rel_w = rel_w.data(); a.bias.k_h = gh; a.bias.k_w = gw;
    cpu::attention(a, &pool);
    Case c{T, T, heads, C, false, 0, 0};
    auto ref = naive(c, q, w, k, w, v, w, a.scale, nullptr, 0, 0, rel_h.data(), rel_w.data(), gh, gw);
    CHECK_REL_L2(out.data(), ref.data(), T * w, 1e-5);
  }
  // Different q and k sizes use the scaled coordinates of the official get_rel_pos.
  std::vector<float> table(2 * 8 - 1), out(4 * 8);
  for (size_t i = 0; i < table.size(); ++i) table[i] = float(i);
  cpu::rel_pos_gather(table.data(), 15, 4, 8, 1, out.data());
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 8; ++j) CHECK_EQ(out[i * 8 + j], float(int64_t(i * 2.0 - j * 1.0 + 7 * 1.0)));
  CHECK_THROWS_CODE(cpu::rel_pos_gather(table.data(), 12, 7, 7, 1, out.data()), ConfigMismatch, "needs 13");
}

TEST(rope2d_matches_eva02_formula) {
  // EVA02 ViT: head_dim 64 -> rope dim 32 per axis, 27x27 grid, pt = ft = 27, theta 1e4.
  const int64_t g = 27, D = 64, heads = 3, T = g * g;
  std::vector<float> cosv(T * D), sinv(T * D);
  cpu::rope2d_tables(g, g, D, 27, 27, 10000, cosv.data(), sinv.data());
  Rng rng(13);
  auto x = rng.vec(T * heads * D);
  auto y = x;
  core::ThreadPool pool(2);
  cpu::rope_apply(y.data(), T, heads, D, heads * D, cosv.data(), sinv.data(), &pool);
  // Naive: freqs f_k = theta^(-2k/R), R = D/2; channel c < R uses row angle, c >= R column angle, pairs interleaved.
  const int64_t R = D / 2;
  std::vector<double> ref(x.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t c = 0; c < D; c += 2) {
        int64_t axis_pos = c < R ? t / g : t % g;
        int64_t kk = (c % R) / 2;
        double f = 1.0 / std::pow(10000.0, 2.0 * kk / R);
        double ang = axis_pos * f;
        double a = x[t * heads * D + h * D + c], b = x[t * heads * D + h * D + c + 1];
        ref[t * heads * D + h * D + c] = a * std::cos(ang) - b * std::sin(ang);
        ref[t * heads * D + h * D + c + 1] = b * std::cos(ang) + a * std::sin(ang);
      }
  CHECK_REL_L2(y.data(), ref.data(), T * heads * D, 1e-6);
  // Token 0 (row 0, col 0) is unchanged; rotation preserves pair norms.
  for (int64_t c = 0; c < D; ++c) CHECK_EQ(y[c], x[c]);
  CHECK_THROWS_CODE(cpu::rope2d_tables(g, g, 66, 27, 27, 1e4, cosv.data(), sinv.data()), InvalidArgument,
                    "multiple of 4");
}

TEST(decode_step_attention_helpers_match_naive_sums) {
  // runtime/kv_cache.h: the dot products and weighted sums of a decode step, against double sums, over head dims
  // with and without a 16-float tail and key counts around the 16 / 64 blocks (a tail block, padding).
  Rng rng(29);
  for (int hd : {7, 16, 32, 48, 64, 80, 96}) {
    for (int n : {1, 15, 16, 17, 63, 64, 65, 100}) {
      auto q = rng.vec(hd), k = rng.vec(int64_t(n) * hd), p = rng.vec(n, 0.f, 1.f);
      std::vector<double> dots(static_cast<size_t>(n), 0.0), sums(static_cast<size_t>(hd), 0.0);
      for (int j = 0; j < n; ++j)
        for (int d = 0; d < hd; ++d) {
          dots[size_t(j)] += double(q[size_t(d)]) * k[size_t(j) * hd + d];
          sums[size_t(d)] += double(p[size_t(j)]) * k[size_t(j) * hd + d];
        }
      std::vector<float> out(size_t(n) + 1, -7.f);
      runtime::key_dots(q.data(), k.data(), n, hd, out.data());
      CHECK_REL_L2(out.data(), dots.data(), n, 1e-5);
      const int ld = (n + 15) / 16 * 16;
      std::vector<float> kt(size_t(hd) * ld, -3.f);
      runtime::transpose_keys(k.data(), n, hd, kt.data(), ld);
      for (int d = 0; d < hd; ++d)
        for (int j = 0; j < ld; ++j) CHECK_EQ(kt[size_t(d) * ld + j], j < n ? k[size_t(j) * hd + d] : 0.f);
      std::fill(out.begin(), out.end(), -7.f);
      runtime::key_dots_transposed(q.data(), kt.data(), n, hd, ld, out.data());
      CHECK_REL_L2(out.data(), dots.data(), n, 1e-5);
      CHECK_EQ(out[size_t(n)], -7.f);  // nothing written past n
      std::vector<float> w(size_t(hd) + 1, 5.f);
      runtime::weighted_rows(p.data(), n, k.data(), hd, w.data(), false);
      CHECK_REL_L2(w.data(), sums.data(), hd, 1e-5);
      CHECK_EQ(w[size_t(hd)], 5.f);
      for (int d = 0; d < hd; ++d) sums[size_t(d)] *= 2.0;  // accumulate adds the same sum again
      runtime::weighted_rows(p.data(), n, k.data(), hd, w.data(), true);
      CHECK_REL_L2(w.data(), sums.data(), hd, 1e-5);
    }
  }
}
