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

void attend_block(const AttentionArgs& a, int64_t h, int64_t q0, int64_t q1, Scratch& sc) {
  const int64_t D = a.head_dim;
  const int64_t nq = q1 - q0;
  float* kt = sc.kt.data();
  float* S = sc.s.data();
  float* acc = sc.acc.data();
  float* m = sc.m.data();
  float* l = sc.l.data();
  std::fill(acc, acc + nq * D, 0.f);
  std::fill(m, m + nq, kNegInf);
  std::fill(l, l + nq, 0.f);

  int64_t kv_end = a.kv_len;
  if (a.causal) kv_end = std::min(kv_end, std::max<int64_t>(0, q1 - 1 + a.causal_offset + 1));
  const float* bias_h = a.bias.data ? a.bias.data + h * a.bias.head_stride : nullptr;
  const float* rel_h = a.bias.rel_h ? a.bias.rel_h + h * a.q_len * a.bias.k_h : nullptr;
  const float* rel_w = a.bias.rel_w ? a.bias.rel_w + h * a.q_len * a.bias.k_w : nullptr;

  for (int64_t k0 = 0; k0 < kv_end; k0 += kAttnKeyBlock) {
    const int64_t nk = std::min(kAttnKeyBlock, kv_end - k0);
    // K block transposed to (D, nk) so the score loop runs over contiguous keys.
    for (int64_t j = 0; j < nk; ++j) {
      const float* kr = a.k + (k0 + j) * a.ldk + h * D;
      for (int64_t d = 0; d < D; ++d) kt[d * kAttnKeyBlock + j] = kr[d];
    }
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t qi = q0 + i;
      const float* qr = a.q + qi * a.ldq + h * D;
      float* srow = S + i * kAttnKeyBlock;
      for (int64_t j = 0; j < nk; ++j) srow[j] = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        const float qd = qr[d];
        const float* ktd = kt + d * kAttnKeyBlock;
        for (int64_t j = 0; j < nk; ++j) srow[j] += qd * ktd[j];
      }
      for (int64_t j = 0; j < nk; ++j) srow[j] *= a.scale;
      if (bias_h) {
        const float* br = bias_h + qi * a.bias.ld + k0;
        for (int64_t j = 0; j < nk; ++j) srow[j] += br[j];
      }
      if (rel_h) {
        const float* rh = rel_h + qi * a.bias.k_h;
        const float* rw = rel_w + qi * a.bias.k_w;
        for (int64_t j = 0; j < nk; ++j) {
          int64_t key = k0 + j;
          srow[j] += rh[key / a.bias.k_w] + rw[key % a.bias.k_w];
        }
      }
      if (a.causal) {
        int64_t last = qi + a.causal_offset;  // keys > last are masked
        for (int64_t j = std::max<int64_t>(0, last + 1 - k0); j < nk; ++j) srow[j] = kNegInf;
      }
      // Online softmax update.
      float bmax = kNegInf;
      for (int64_t j = 0; j < nk; ++j) bmax = std::max(bmax, srow[j]);
      const float m_new = std::max(m[i], bmax);
      if (m_new == kNegInf) continue;  // everything so far is masked
      const float corr = std::exp(m[i] - m_new);  // exp(-inf) = 0 on the first unmasked block
      float psum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        float p = std::exp(srow[j] - m_new);
        srow[j] = p;
        psum += p;
      }
      l[i] = l[i] * corr + psum;
      m[i] = m_new;
      float* ar = acc + i * D;
      if (corr != 1.f)
        for (int64_t d = 0; d < D; ++d) ar[d] *= corr;
      for (int64_t j = 0; j < nk; ++j) {
        const float p = srow[j];
        if (p == 0.f) continue;
        const float* vr = a.v + (k0 + j) * a.ldv + h * D;
        for (int64_t d = 0; d < D; ++d) ar[d] += p * vr[d];
      }
    }
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
