#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "cpu/simd.h"
#include "cpu/vec.h"

namespace pixelllm::cpu {

namespace {

using simd::vf;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// K^T is packed per head in panels of kPanel keys (the last panel of a head may be 16 wide), each panel
// (head_dim, width) contiguous, so the score micro-kernel streams it linearly.
constexpr int64_t kPanel = 32;
// Score rows held per task: query block x keys, within this many floats (256 KB, an L2-sized tile).
constexpr int64_t kScoreFloats = 1 << 16;
// Fewer queries than this: scores straight from the K rows by dot products (packing K would cost as much as
// the whole product, as in a decode step).
constexpr int64_t kPackMinQueries = 4;

void check_args(const AttentionArgs& a) {
  auto bad = [](const std::string& m) { core::fail(core::ErrorCode::InvalidArgument, "attention: " + m); };
  if (a.q_len < 0 || a.kv_len < 0 || a.heads <= 0 || a.head_dim <= 0) bad("non-positive sizes");
  int64_t width = a.heads * a.head_dim;
  if (!a.q || !a.k || !a.v || !a.out) bad("null pointer");
  if (a.ldq < width || a.ldk < width || a.ldv < width || a.ldo < width) bad("row stride smaller than heads*head_dim");
  if ((a.bias.rel_h != nullptr) != (a.bias.rel_w != nullptr)) bad("rel_h and rel_w must be given together");
  if (a.bias.rel_h && a.bias.k_h * a.bias.k_w != a.kv_len)
    bad("rel-pos grid " + std::to_string(a.bias.k_h) + "x" + std::to_string(a.bias.k_w) + " != kv_len " +
        std::to_string(a.kv_len));
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Packed K^T of every head: head h at kt + h * D * kv_pad, panel p (keys [32p, 32p + w)) at + 32p * D, element
// (d, key 32p + c) at + d * w + c; keys past kv_len are zero. V of head h is copied to vp + h * kv_pad * D as
// contiguous (kv_len, D) rows: the strided rows of a fused qkv buffer (12 KB apart for EVA02-L) all fall in the
// same L1 set and thrash it.
void pack_kv(const AttentionArgs& a, int64_t kv_pad, float* kt, float* vp, core::ThreadPool* pool) {
  const int64_t D = a.head_dim, panels = (kv_pad + kPanel - 1) / kPanel;
  core::parallel_for(pool, a.heads * panels, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / panels, k0 = (t % panels) * kPanel;
      const int64_t w = std::min(kPanel, kv_pad - k0);
      float* dst = kt + h * D * kv_pad + k0 * D;
      for (int64_t c = 0; c < w; ++c) {
        const int64_t key = k0 + c;
        if (key < a.kv_len) {
          const float* kr = a.k + key * a.ldk + h * D;
          for (int64_t d = 0; d < D; ++d) dst[d * w + c] = kr[d];
          std::memcpy(vp + (h * kv_pad + key) * D, a.v + key * a.ldv + h * D, sizeof(float) * size_t(D));
        } else {
          for (int64_t d = 0; d < D; ++d) dst[d * w + c] = 0.f;
        }
      }
    }
  });
}

// S[i][j] (row stride lds >= kv_pad) = Q_i . K_j for rows [0, nq) and at least keys [0, nk) from the packed
// K^T of one head (kv_pad keys); whole panels are computed. Four query rows x one 32-key panel per pass (8 vector
// accumulators).
PIXELLLM_SIMD_CLONES void scores_packed(const float* q, int64_t ldq, int64_t nq, const float* kt, int64_t kv_pad,
                                        int64_t nk, int64_t D, float* S, int64_t lds) {
  for (int64_t k0 = 0; k0 < nk; k0 += kPanel) {
    const int64_t w = std::min(kPanel, kv_pad - k0);
    const float* panel = kt + k0 * D;
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) {
      const float *q0 = q + i * ldq, *q1 = q0 + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
      if (w == kPanel) {
        vf a0 = {}, b0 = {}, a1 = {}, b1 = {}, a2 = {}, b2 = {}, a3 = {}, b3 = {}, x, y;
        for (int64_t d = 0; d < D; ++d) {
          simd::load(x, panel + d * kPanel);
          simd::load(y, panel + d * kPanel + 16);
          a0 += q0[d] * x; b0 += q0[d] * y;
          a1 += q1[d] * x; b1 += q1[d] * y;
          a2 += q2[d] * x; b2 += q2[d] * y;
          a3 += q3[d] * x; b3 += q3[d] * y;
        }
        float* s = S + i * lds + k0;
        simd::store(s, a0); simd::store(s + 16, b0);
        simd::store(s + lds, a1); simd::store(s + lds + 16, b1);
        simd::store(s + 2 * lds, a2); simd::store(s + 2 * lds + 16, b2);
        simd::store(s + 3 * lds, a3); simd::store(s + 3 * lds + 16, b3);
      } else {  // a 16-key panel
        vf a0 = {}, a1 = {}, a2 = {}, a3 = {}, x;
        for (int64_t d = 0; d < D; ++d) {
          simd::load(x, panel + d * 16);
          a0 += q0[d] * x;
          a1 += q1[d] * x;
          a2 += q2[d] * x;
          a3 += q3[d] * x;
        }
        float* s = S + i * lds + k0;
        simd::store(s, a0);
        simd::store(s + lds, a1);
        simd::store(s + 2 * lds, a2);
        simd::store(s + 3 * lds, a3);
      }
    }
    for (; i < nq; ++i) {
      const float* q0 = q + i * ldq;
      for (int64_t c = 0; c < w; c += 16) {
        vf a0 = {}, x;
        for (int64_t d = 0; d < D; ++d) {
          simd::load(x, panel + d * w + c);
          a0 += q0[d] * x;
        }
        simd::store(S + i * lds + k0 + c, a0);
      }
    }
  }
}

// Row i of S (length n, room for n rounded up to 16): scale, biases and the causal mask applied in place, then
// replaced by exp(s - max); returns 1 / sum (0 when every key is masked: the row of P is then all zero). Two passes
// over the row: scale + dense bias + running max (the decomposed rel-pos bias, whose key grid rows need not be
// whole vectors, is added row by row first), then exp and sum.
PIXELLLM_SIMD_CLONES float softmax_row(const AttentionArgs& a, int64_t h, int64_t qi, int64_t n, float* s) {
  const float scale = a.scale;
  int64_t end = n;
  if (a.causal) end = std::clamp<int64_t>(qi + a.causal_offset + 1, 0, n);
  const int64_t n16 = round_up(n, 16);
  const float* br = a.bias.data ? a.bias.data + h * a.bias.head_stride + qi * a.bias.ld : nullptr;
  if (a.bias.rel_h) {
    // s = scale * s (+ dense) + (rel_h + rel_w): the same additions, in the same order, as separate passes.
    const int64_t kh = a.bias.k_h, kw = a.bias.k_w;
    const float* rh = a.bias.rel_h + (h * a.q_len + qi) * kh;
    const float* rw = a.bias.rel_w + (h * a.q_len + qi) * kw;
    for (int64_t y = 0; y < kh; ++y) {
      float* sr = s + y * kw;
      const float* bb = br ? br + y * kw : nullptr;
      const float hy = rh[y];
      if (bb)
        for (int64_t x = 0; x < kw; ++x) sr[x] = (sr[x] * scale + bb[x]) + (hy + rw[x]);
      else
        for (int64_t x = 0; x < kw; ++x) sr[x] = sr[x] * scale + (hy + rw[x]);
    }
  }
  for (int64_t j = end; j < n16; ++j) s[j] = kNegInf;
  vf m, x, b, sc;
  simd::splat(m, kNegInf);
  simd::splat(sc, scale);
  const int64_t full = end / 16 * 16;
  if (a.bias.rel_h) {  // already scaled and biased
    for (int64_t j = 0; j < n16; j += 16) {
      simd::load(x, s + j);
      simd::select(m, x > m, x, m);
    }
  } else {
    int64_t j = 0;
    for (; j < full; j += 16) {
      simd::load(x, s + j);
      x *= sc;
      if (br) {
        simd::load(b, br + j);
        x += b;
      }
      simd::store(s + j, x);
      simd::select(m, x > m, x, m);
    }
    for (int64_t k = j; k < end; ++k) s[k] = br ? s[k] * scale + br[k] : s[k] * scale;
    for (; j < n16; j += 16) {
      simd::load(x, s + j);
      simd::select(m, x > m, x, m);
    }
  }
  const float mx = simd::hmax(m);
  if (mx == kNegInf) {
    for (int64_t j = 0; j < n16; ++j) s[j] = 0.f;
    return 0.f;
  }
  vf sum = {};
  for (int64_t j = 0; j < n16; j += 16) {
    simd::load(x, s + j);
    x -= mx;
    simd::exp(x);
    sum += x;
    simd::store(s + j, x);
  }
  return 1.0f / simd::hsum(sum);
}

// out[i][:] = inv[i] * sum_j P[i][j] V_j for rows [0, nq), keys [0, nk). Four rows x 32 (then 16) output
// columns per pass; columns past the last multiple of 16 take a scalar loop.
PIXELLLM_SIMD_CLONES void pv_rows(const float* P, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk,
                                  int64_t D, const float* inv, float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) {
    const float *p0 = P + i * ldp, *p1 = p0 + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
    float *o0 = out + i * ldo, *o1 = o0 + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo;
    int64_t d = 0;
    for (; d + 32 <= D; d += 32) {
      vf a0 = {}, b0 = {}, a1 = {}, b1 = {}, a2 = {}, b2 = {}, a3 = {}, b3 = {}, x, y;
      for (int64_t j = 0; j < nk; ++j) {
        simd::load(x, v + j * ldv + d);
        simd::load(y, v + j * ldv + d + 16);
        a0 += p0[j] * x; b0 += p0[j] * y;
        a1 += p1[j] * x; b1 += p1[j] * y;
        a2 += p2[j] * x; b2 += p2[j] * y;
        a3 += p3[j] * x; b3 += p3[j] * y;
      }
      a0 *= inv[i]; b0 *= inv[i]; a1 *= inv[i + 1]; b1 *= inv[i + 1];
      a2 *= inv[i + 2]; b2 *= inv[i + 2]; a3 *= inv[i + 3]; b3 *= inv[i + 3];
      simd::store(o0 + d, a0); simd::store(o0 + d + 16, b0);
      simd::store(o1 + d, a1); simd::store(o1 + d + 16, b1);
      simd::store(o2 + d, a2); simd::store(o2 + d + 16, b2);
      simd::store(o3 + d, a3); simd::store(o3 + d + 16, b3);
    }
    for (; d + 16 <= D; d += 16) {
      vf a0 = {}, a1 = {}, a2 = {}, a3 = {}, x;
      for (int64_t j = 0; j < nk; ++j) {
        simd::load(x, v + j * ldv + d);
        a0 += p0[j] * x;
        a1 += p1[j] * x;
        a2 += p2[j] * x;
        a3 += p3[j] * x;
      }
      a0 *= inv[i]; a1 *= inv[i + 1]; a2 *= inv[i + 2]; a3 *= inv[i + 3];
      simd::store(o0 + d, a0);
      simd::store(o1 + d, a1);
      simd::store(o2 + d, a2);
      simd::store(o3 + d, a3);
    }
    for (; d < D; ++d) {
      float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        const float vv = v[j * ldv + d];
        a0 += p0[j] * vv;
        a1 += p1[j] * vv;
        a2 += p2[j] * vv;
        a3 += p3[j] * vv;
      }
      o0[d] = a0 * inv[i]; o1[d] = a1 * inv[i + 1]; o2[d] = a2 * inv[i + 2]; o3[d] = a3 * inv[i + 3];
    }
  }
  for (; i < nq; ++i) {
    const float* p0 = P + i * ldp;
    float* o0 = out + i * ldo;
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
      vf a0 = {}, x;
      for (int64_t j = 0; j < nk; ++j) {
        simd::load(x, v + j * ldv + d);
        a0 += p0[j] * x;
      }
      a0 *= inv[i];
      simd::store(o0 + d, a0);
    }
    for (; d < D; ++d) {
      float a0 = 0.f;
      for (int64_t j = 0; j < nk; ++j) a0 += p0[j] * v[j * ldv + d];
      o0[d] = a0 * inv[i];
    }
  }
}

// One task: head h, queries [q0, q1). kt / vp: the packed K^T and V of head h, or null (scores by dot products
// from the K rows, V read in place).
void attend_block(const AttentionArgs& a, int64_t h, int64_t q0, int64_t q1, const float* kt, const float* vp,
                  float* S, int64_t lds, float* inv) {
  const int64_t D = a.head_dim, nq = q1 - q0;
  int64_t nk = a.kv_len;  // keys any row of the block can see
  if (a.causal) nk = std::clamp<int64_t>(q1 - 1 + a.causal_offset + 1, 0, a.kv_len);
  const float* q = a.q + q0 * a.ldq + h * D;
  if (nk > 0) {
    if (kt) {
      scores_packed(q, a.ldq, nq, kt, lds, nk, D, S, lds);
    } else {
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < nk; ++j) S[i * lds + j] = vec::dot(q + i * a.ldq, a.k + j * a.ldk + h * D, D);
    }
  }
  for (int64_t i = 0; i < nq; ++i) inv[i] = softmax_row(a, h, q0 + i, nk, S + i * lds);
  const float* v = vp ? vp : a.v + h * D;
  pv_rows(S, lds, nq, v, vp ? D : a.ldv, nk, D, inv, a.out + q0 * a.ldo + h * D, a.ldo);
}

}  // namespace

void attention(const AttentionArgs& a, core::ThreadPool* pool) {
  check_args(a);
  if (a.q_len == 0) return;
  const int64_t D = a.head_dim;
  const int64_t kv_pad = round_up(std::max<int64_t>(a.kv_len, 1), 16);
  const bool pack = a.q_len >= kPackMinQueries;
  thread_local core::AlignedVector<float> kt_buf, vp_buf;  // the caller's thread: reused across calls
  if (pack) {
    kt_buf.resize(static_cast<size_t>(a.heads * D * kv_pad));
    vp_buf.resize(static_cast<size_t>(a.heads * D * kv_pad));
    pack_kv(a, kv_pad, kt_buf.data(), vp_buf.data(), pool);
  }
  const float* kt = pack ? kt_buf.data() : nullptr;
  const float* vp = pack ? vp_buf.data() : nullptr;
  int64_t qblock = std::clamp<int64_t>(kScoreFloats / kv_pad / 4 * 4, 4, 32);
  qblock = std::min(qblock, a.q_len);
  const int64_t qblocks = (a.q_len + qblock - 1) / qblock;
  core::parallel_for(pool, a.heads * qblocks, 1, [&](int64_t t0, int64_t t1) {
    thread_local core::AlignedVector<float> s_buf, inv_buf;
    if (s_buf.size() < static_cast<size_t>(qblock * kv_pad)) s_buf.resize(static_cast<size_t>(qblock * kv_pad));
    if (inv_buf.size() < static_cast<size_t>(qblock)) inv_buf.resize(static_cast<size_t>(qblock));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / qblocks;
      const int64_t q0 = (t % qblocks) * qblock;
      attend_block(a, h, q0, std::min(a.q_len, q0 + qblock), kt ? kt + h * D * kv_pad : nullptr,
                   vp ? vp + h * kv_pad * D : nullptr, s_buf.data(), kv_pad, inv_buf.data());
    }
  });
}

}  // namespace pixelllm::cpu
