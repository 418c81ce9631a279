#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace pixelllm::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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

// Per-thread scratch, grown once and reused (no allocation in the inner loops).
struct Scratch {
  core::AlignedVector<float> kt, s, acc, m, l;
  void ensure(int64_t d) {
    kt.resize(static_cast<size_t>(d * kAttnKeyBlock));
    s.resize(static_cast<size_t>(kAttnQueryBlock * kAttnKeyBlock));
    acc.resize(static_cast<size_t>(kAttnQueryBlock * d));
    m.resize(kAttnQueryBlock);
    l.resize(kAttnQueryBlock);
  }
};

// 8-float vectors through GCC vector extensions. The two tile kernels are compiled three times (x86-64-v4,
// x86-64-v3 with AVX2+FMA, and the baseline) and the best one is picked at load time (ifunc), so the shipped
// x86-64-v2 build still uses AVX where the CPU has it.
typedef float v8f __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi"  // the helpers are always inlined; no 32-byte vector crosses an ABI edge
#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define PIXELLLM_TILE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PIXELLLM_TILE_CLONES
#endif

__attribute__((always_inline)) inline v8f load8(const float* p) {
  v8f v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline void store8(float* p, v8f v) { __builtin_memcpy(p, &v, sizeof(v)); }

// S[i][j] (row stride kAttnKeyBlock) = sum_d Q_i[d] * kt[d][j] for rows [0, nq) and keys [0, nk_pad) where
// nk_pad is nk rounded up to 8 (kt columns past nk are zero). Four query rows per pass share each kt load.
PIXELLLM_TILE_CLONES void scores_tile(const float* const* qrows, int64_t nq, const float* kt, int64_t D, int64_t nk_pad, float* S) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) {
    const float *q0 = qrows[i], *q1 = qrows[i + 1], *q2 = qrows[i + 2], *q3 = qrows[i + 3];
    for (int64_t j = 0; j < nk_pad; j += 8) {
      v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t d = 0; d < D; ++d) {
        const v8f kv = load8(kt + d * kAttnKeyBlock + j);
        a0 += q0[d] * kv;
        a1 += q1[d] * kv;
        a2 += q2[d] * kv;
        a3 += q3[d] * kv;
      }
      store8(S + i * kAttnKeyBlock + j, a0);
      store8(S + (i + 1) * kAttnKeyBlock + j, a1);
      store8(S + (i + 2) * kAttnKeyBlock + j, a2);
      store8(S + (i + 3) * kAttnKeyBlock + j, a3);
    }
  }
  for (; i < nq; ++i) {
    const float* q0 = qrows[i];
    for (int64_t j = 0; j < nk_pad; j += 8) {
      v8f a0 = {};
      for (int64_t d = 0; d < D; ++d) a0 += q0[d] * load8(kt + d * kAttnKeyBlock + j);
      store8(S + i * kAttnKeyBlock + j, a0);
    }
  }
}

// acc[i][:] += sum_j P[i][j] * V_j[:] for rows [0, nq), keys [0, nk); D % 8 == 0 takes the vector path.
PIXELLLM_TILE_CLONES void pv_tile(const float* P, int64_t nq, int64_t nk, const float* v, int64_t ldv, int64_t D, float* acc) {
  if (D % 8 != 0) {
    for (int64_t i = 0; i < nq; ++i) {
      float* ar = acc + i * D;
      for (int64_t j = 0; j < nk; ++j) {
        const float p = P[i * kAttnKeyBlock + j];
        const float* vr = v + j * ldv;
        for (int64_t d = 0; d < D; ++d) ar[d] += p * vr[d];
      }
    }
    return;
  }
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) {
    const float *p0 = P + i * kAttnKeyBlock, *p1 = p0 + kAttnKeyBlock, *p2 = p1 + kAttnKeyBlock,
                *p3 = p2 + kAttnKeyBlock;
    for (int64_t d = 0; d < D; d += 8) {
      v8f a0 = load8(acc + i * D + d), a1 = load8(acc + (i + 1) * D + d), a2 = load8(acc + (i + 2) * D + d),
          a3 = load8(acc + (i + 3) * D + d);
      for (int64_t j = 0; j < nk; ++j) {
        const v8f vv = load8(v + j * ldv + d);
        a0 += p0[j] * vv;
        a1 += p1[j] * vv;
        a2 += p2[j] * vv;
        a3 += p3[j] * vv;
      }
      store8(acc + i * D + d, a0);
      store8(acc + (i + 1) * D + d, a1);
      store8(acc + (i + 2) * D + d, a2);
      store8(acc + (i + 3) * D + d, a3);
    }
  }
  for (; i < nq; ++i) {
    const float* p0 = P + i * kAttnKeyBlock;
    for (int64_t d = 0; d < D; d += 8) {
      v8f a0 = load8(acc + i * D + d);
      for (int64_t j = 0; j < nk; ++j) a0 += p0[j] * load8(v + j * ldv + d);
      store8(acc + i * D + d, a0);
    }
  }
}

void attend_block(const AttentionArgs& a, int64_t h, int64_t q0, int64_t q1, Scratch& sc) {
  const int64_t D = a.head_dim;
  const int64_t nq = q1 - q0;
  float* kt = sc.kt.data();
  float* S = sc.s.data();
  float* acc = sc.acc.data();
  float* m = sc.m.data();
  float* l = sc.l.data();
  const float* qrows[kAttnQueryBlock];
  for (int64_t i = 0; i < nq; ++i) qrows[i] = a.q + (q0 + i) * a.ldq + h * D;
  std::fill(acc, acc + nq * D, 0.f);
  std::fill(m, m + nq, kNegInf);
  std::fill(l, l + nq, 0.f);

  int64_t kv_end = a.kv_len;
  if (a.causal) kv_end = std::min(kv_end, std::max<int64_t>(0, q1 + a.causal_offset));
  const float* bias_h = a.bias.data ? a.bias.data + h * a.bias.head_stride : nullptr;
  const float* rel_h = a.bias.rel_h ? a.bias.rel_h + h * a.q_len * a.bias.k_h : nullptr;
  const float* rel_w = a.bias.rel_w ? a.bias.rel_w + h * a.q_len * a.bias.k_w : nullptr;

  for (int64_t k0 = 0; k0 < kv_end; k0 += kAttnKeyBlock) {
    const int64_t nk = std::min(kAttnKeyBlock, kv_end - k0);
    const int64_t nk_pad = (nk + 7) / 8 * 8;
    // K block transposed to (D, kAttnKeyBlock), zero-padded to a multiple of 8 keys.
    for (int64_t j = 0; j < nk; ++j) {
      const float* kr = a.k + (k0 + j) * a.ldk + h * D;
      for (int64_t d = 0; d < D; ++d) kt[d * kAttnKeyBlock + j] = kr[d];
    }
    for (int64_t j = nk; j < nk_pad; ++j)
      for (int64_t d = 0; d < D; ++d) kt[d * kAttnKeyBlock + j] = 0.f;
    scores_tile(qrows, nq, kt, D, nk_pad, S);
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t qi = q0 + i;
      float* srow = S + i * kAttnKeyBlock;
      for (int64_t j = 0; j < nk; ++j) srow[j] *= a.scale;
      if (bias_h) {
        const float* br = bias_h + qi * a.bias.ld + k0;
        for (int64_t j = 0; j < nk; ++j) srow[j] += br[j];
      }
      if (rel_h) {
        const float* rh = rel_h + qi * a.bias.k_h;
        const float* rw = rel_w + qi * a.bias.k_w;
        for (int64_t j = 0; j < nk; ++j) {
          const int64_t key = k0 + j;
          srow[j] += rh[key / a.bias.k_w] + rw[key % a.bias.k_w];
        }
      }
      if (a.causal) {
        const int64_t last = qi + a.causal_offset;  // keys > last are masked
        for (int64_t j = std::max<int64_t>(0, last + 1 - k0); j < nk; ++j) srow[j] = kNegInf;
      }
      // Online softmax: rescale what is accumulated so far to the new running max.
      float bmax = kNegInf;
      for (int64_t j = 0; j < nk; ++j) bmax = std::max(bmax, srow[j]);
      const float m_new = std::max(m[i], bmax);
      if (m_new == kNegInf) {  // everything so far is masked: contributes nothing
        for (int64_t j = 0; j < nk; ++j) srow[j] = 0.f;
        continue;
      }
      const float corr = std::exp(m[i] - m_new);  // exp(-inf) = 0 on the first unmasked block
      float psum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        const float p = std::exp(srow[j] - m_new);
        srow[j] = p;
        psum += p;
      }
      l[i] = l[i] * corr + psum;
      m[i] = m_new;
      if (corr != 1.f) {
        float* ar = acc + i * D;
        for (int64_t d = 0; d < D; ++d) ar[d] *= corr;
      }
    }
    pv_tile(S, nq, nk, a.v + k0 * a.ldv + h * D, a.ldv, D, acc);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* orow = a.out + (q0 + i) * a.ldo + h * D;
    const float inv = l[i] > 0.f ? 1.0f / l[i] : 0.f;
    const float* ar = acc + i * D;
    for (int64_t d = 0; d < D; ++d) orow[d] = ar[d] * inv;
  }
}

}  // namespace

void attention(const AttentionArgs& a, core::ThreadPool* pool) {
  check_args(a);
  if (a.q_len == 0) return;
  const int64_t qblocks = (a.q_len + kAttnQueryBlock - 1) / kAttnQueryBlock;
  core::parallel_for(pool, a.heads * qblocks, 1, [&](int64_t t0, int64_t t1) {
    thread_local Scratch scratch;
    scratch.ensure(a.head_dim);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / qblocks;
      const int64_t q0 = (t % qblocks) * kAttnQueryBlock;
      attend_block(a, h, q0, std::min(a.q_len, q0 + kAttnQueryBlock), scratch);
    }
  });
}

}  // namespace pixelllm::cpu
