#include "model/git_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/activations.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/softmax.h"
#include "cpu/vec.h"
#include "runtime/kv_cache.h"

namespace pixelllm::model {

using core::ErrorCode;
using core::Tensor;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Tensor concat_rows(const Tensor& a, const Tensor& b, const Tensor& c) {
  Tensor out = Tensor::empty({a.numel() + b.numel() + c.numel()});
  std::memcpy(out.data(), a.data(), a.nbytes());
  std::memcpy(out.data() + a.numel(), b.data(), b.nbytes());
  std::memcpy(out.data() + a.numel() + b.numel(), c.data(), c.nbytes());
  return out;
}

void check_tokens(const int32_t* t, int n, int vocab, const char* what) {
  for (int i = 0; i < n; ++i)
    PIXELLLM_CHECK(t[i] >= 0 && t[i] < vocab, InvalidText,
                   std::string("git_decoder: ") + what + " token " + std::to_string(t[i]) + " at " +
                       std::to_string(i) + " outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace

GitDecoderConfig GitDecoderConfig::from_json(const core::JsonReader& r) {
  GitDecoderConfig c;
  c.hidden_size = static_cast<int>(r.get_int("hidden_size", 1, 1 << 16));
  c.num_heads = static_cast<int>(r.get_int("num_heads", 1, 1024));
  c.num_layers = static_cast<int>(r.get_int("num_layers", 1, 1024));
  c.intermediate_size = static_cast<int>(r.get_int("intermediate_size", 1, 1 << 18));
  c.max_positions = static_cast<int>(r.get_int("max_positions", 1, 1 << 16));
  c.vocab_size = static_cast<int>(r.get_int("vocab_size", 1, 1 << 24));
  c.visual_dim = static_cast<int>(r.get_int("visual_dim", 1, 1 << 16));
  c.attention_ln_eps = static_cast<float>(r.get_number("attention_ln_eps", 0, 1, 1e-5));
  c.output_ln_eps = static_cast<float>(r.get_number("output_ln_eps", 0, 1, 1e-12));
  c.embedding_ln_eps = static_cast<float>(r.get_number("embedding_ln_eps", 0, 1, 1e-8));
  c.visual_ln_eps = static_cast<float>(r.get_number("visual_ln_eps", 0, 1, 1e-5));
  PIXELLLM_CHECK(c.hidden_size % c.num_heads == 0, ModelFormat,
                 "config.json:git_decoder: hidden_size " + std::to_string(c.hidden_size) +
                     " is not a multiple of num_heads " + std::to_string(c.num_heads));
  return c;
}

// ---- per-request state ------------------------------------------------------------------------------------------

struct GitDecoder::Rows {
  Rows(const GitDecoderConfig& c, int rows) {
    auto alloc = [&](int64_t cols) { return Tensor::empty({static_cast<int64_t>(rows), cols}); };
    x = alloc(c.hidden_size);
    qkv = alloc(3 * c.hidden_size);
    ctx = alloc(c.hidden_size);
    att = alloc(c.hidden_size);
    inter = alloc(c.intermediate_size);
  }
  Tensor x, qkv, ctx, att, inter;
};

class GitDecoder::Workspace final : public TextDecoderWorkspace {
 public:
  Workspace(const GitDecoderConfig& c, int rows) : max_rows(rows), b(c, rows) {}
  int max_rows;
  Rows b;
};

class GitDecoder::State final : public TextDecoderState {
 public:
  State(const GitDecoderConfig& c, const TextDecoderLimits& lim)
      : limits(lim),
        prefix(c.num_layers, c.num_heads, c.hidden_size / c.num_heads, lim.max_visual + std::max(lim.max_context, 0)),
        b(c, std::max(prefix.capacity(), lim.max_sequences)) {
    const int d = c.hidden_size;
    seqs.reserve(lim.max_sequences);
    spare.reserve(lim.max_sequences);
    for (int i = 0; i < lim.max_sequences; ++i) {
      seqs.emplace_back(c.num_layers, c.num_heads, d / c.num_heads, lim.max_text);
      spare.emplace_back(c.num_layers, c.num_heads, d / c.num_heads, lim.max_text);
    }
    scores = Tensor::empty({static_cast<int64_t>(prefix.capacity()) + lim.max_text});
    prefix_kt = Tensor::empty({c.num_layers, c.num_heads, d / c.num_heads, kt_ld()});
    key_bias = Tensor::empty({prefix.capacity()});
  }

  // Prefix keys of (layer, head), transposed (runtime::transpose_keys, row stride kt_ld()): every step's queries read
  // them, so they are laid out once, at the prefill, for dot products over 16 keys at a time.
  int kt_ld() const { return (prefix.capacity() + 15) / 16 * 16; }
  float* kt(int layer, int head) {
    return prefix_kt.data() + (static_cast<int64_t>(layer) * prefix.heads() + head) * prefix.head_dim() * kt_ld();
  }

  TextDecoderLimits limits;
  runtime::KvCache prefix;
  Tensor prefix_kt;  // (layers, heads, head_dim, kt_ld())
  Tensor key_bias;   // (prefix capacity): 0 for an attendable prefix position, -inf for a padded one
  std::vector<runtime::KvCache> seqs, spare;
  Rows b;
  Tensor scores;

  void set_sequences(int n) { num_sequences_ = n; }
  void set_position(int p) { position_ = p; }
};

// ---- loading ----------------------------------------------------------------------------------------------------

GitDecoder::GitDecoder(const GitDecoderConfig& c, const core::SafeTensors& w, cpu::WeightFormat format) : cfg_(c) {
  const int64_t d = c.hidden_size, v = c.vocab_size, ff = c.intermediate_size;
  const std::string p = "git_decoder.";
  vis_w_ = cpu::PackedWeight::pack(w.get(p + "visual_projection.0.weight", {d, c.visual_dim}), cpu::WeightFormat::f32);
  vis_b_ = w.get(p + "visual_projection.0.bias", {d});
  vis_ln_g_ = w.get(p + "visual_projection.1.weight", {d});
  vis_ln_b_ = w.get(p + "visual_projection.1.bias", {d});
  word_ = w.get(p + "embeddings.word_embeddings.weight", {v, d});
  pos_ = w.get(p + "embeddings.position_embeddings.weight", {c.max_positions, d});
  emb_ln_g_ = w.get(p + "embeddings.LayerNorm.weight", {d});
  emb_ln_b_ = w.get(p + "embeddings.LayerNorm.bias", {d});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string l = p + "encoder.layer." + std::to_string(i) + ".";
    Layer L;
    const Tensor qkv = concat_rows(w.get(l + "attention.self.query.weight", {d, d}),
                                   w.get(l + "attention.self.key.weight", {d, d}),
                                   w.get(l + "attention.self.value.weight", {d, d}));
    L.qkv_w = cpu::PackedWeight::pack(qkv.data(), 3 * d, d, format);
    L.qkv_b = concat_rows(w.get(l + "attention.self.query.bias", {d}), w.get(l + "attention.self.key.bias", {d}),
                          w.get(l + "attention.self.value.bias", {d}));
    L.out_w = cpu::PackedWeight::pack(w.get(l + "attention.output.dense.weight", {d, d}), format);
    L.out_b = w.get(l + "attention.output.dense.bias", {d});
    L.ln1_g = w.get(l + "attention.output.LayerNorm.weight", {d});
    L.ln1_b = w.get(l + "attention.output.LayerNorm.bias", {d});
    L.inter_w = cpu::PackedWeight::pack(w.get(l + "intermediate.dense.weight", {ff, d}), format);
    L.inter_b = w.get(l + "intermediate.dense.bias", {ff});
    L.out2_w = cpu::PackedWeight::pack(w.get(l + "output.dense.weight", {d, ff}), format);
    L.out2_b = w.get(l + "output.dense.bias", {d});
    L.ln2_g = w.get(l + "output.LayerNorm.weight", {d});
    L.ln2_b = w.get(l + "output.LayerNorm.bias", {d});
    layers_.push_back(std::move(L));
  }
  PIXELLLM_CHECK(!w.has(p + "encoder.layer." + std::to_string(c.num_layers) + ".attention.self.query.weight"),
                 ConfigMismatch, "git_decoder: the weights have more layers than config num_layers");
  out_w_ = cpu::PackedWeight::pack(w.get(p + "output.weight", {v, d}), format);
  out_b_ = w.get(p + "output.bias", {v});
}

std::unique_ptr<GitDecoder> GitDecoder::load(const core::JsonReader& section, const core::SafeTensors& weights,
                                             cpu::WeightFormat format) {
  return std::make_unique<GitDecoder>(GitDecoderConfig::from_json(section), weights, format);
}

std::unique_ptr<TextDecoderState> GitDecoder::new_state(const TextDecoderLimits& lim) const {
  PIXELLLM_CHECK(lim.max_visual >= 1 && lim.max_visual <= 4096 && lim.max_context >= 0 && lim.max_context <= 4096,
                 LimitExceeded, "git_decoder: prefix limits out of range (visual 1..4096, context 0..4096)");
  PIXELLLM_CHECK(lim.max_text >= 1 && lim.max_text <= cfg_.max_positions, LimitExceeded,
                 "git_decoder: max_text " + std::to_string(lim.max_text) + " outside 1.." +
                     std::to_string(cfg_.max_positions) + " (the position table)");
  PIXELLLM_CHECK(lim.max_sequences >= 1 && lim.max_sequences <= 64, LimitExceeded,
                 "git_decoder: max_sequences " + std::to_string(lim.max_sequences) + " outside 1..64");
  return std::make_unique<State>(cfg_, lim);
}

// ---- compute ----------------------------------------------------------------------------------------------------

void GitDecoder::embed(const int32_t* tokens, int n, int start, float* out) const {
  const int d = cfg_.hidden_size;
  for (int i = 0; i < n; ++i) {
    const float* wv = word_.data() + static_cast<int64_t>(tokens[i]) * d;
    const float* pv = pos_.data() + static_cast<int64_t>(start + i) * d;
    float* o = out + static_cast<int64_t>(i) * d;
    for (int j = 0; j < d; ++j) o[j] = wv[j] + pv[j];
  }
  cpu::layer_norm(out, n, d, emb_ln_g_.data(), emb_ln_b_.data(), cfg_.embedding_ln_eps, out);
}

void GitDecoder::finish_layer(const Layer& L, Rows& b, int rows) const {
  const int d = cfg_.hidden_size, ff = cfg_.intermediate_size;
  // a = LN1(x + dense(ctx))
  cpu::linear(b.ctx.data(), rows, L.out_w, L.out_b.data(), b.x.data(), /*accumulate=*/true);
  cpu::layer_norm(b.x.data(), rows, d, L.ln1_g.data(), L.ln1_b.data(), cfg_.attention_ln_eps, b.att.data());
  // x = LN2(a + W2 gelu(W1 a))
  cpu::linear(b.att.data(), rows, L.inter_w, L.inter_b.data(), b.inter.data());
  cpu::gelu(b.inter.data(), static_cast<int64_t>(rows) * ff);
  cpu::linear(b.inter.data(), rows, L.out2_w, L.out2_b.data(), b.att.data(), /*accumulate=*/true);
  cpu::layer_norm(b.att.data(), rows, d, L.ln2_g.data(), L.ln2_b.data(), cfg_.output_ln_eps, b.x.data());
}

template <class Attend>
void GitDecoder::run_text_layers(Rows& b, int rows, Attend&& attend, float* logits, float* hidden) const {
  const int d = cfg_.hidden_size;
  float* x = b.x.data();
  for (int li = 0; li < cfg_.num_layers; ++li) {
    const Layer& L = layers_[li];
    cpu::linear(x, rows, L.qkv_w, L.qkv_b.data(), b.qkv.data());
    attend(li, b.qkv.data());
    finish_layer(L, b, rows);
  }
  if (hidden) std::memcpy(hidden, x, static_cast<size_t>(rows) * d * sizeof(float));
  if (logits) cpu::linear(x, rows, out_w_, out_b_.data(), logits);
}

void GitDecoder::prefill(TextDecoderState& base, const float* visual, int n_visual, const int32_t* context,
                         int n_context, int num_sequences) const {
  State& s = static_cast<State&>(base);
  const int d = cfg_.hidden_size, hd = d / cfg_.num_heads;
  if (context == nullptr) n_context = 0;
  PIXELLLM_CHECK(n_visual >= 1 && n_visual <= s.limits.max_visual, LimitExceeded,
                 "git_decoder: " + std::to_string(n_visual) + " visual tokens, state allows 1.." +
                     std::to_string(s.limits.max_visual));
  PIXELLLM_CHECK(n_context >= 0 && n_context <= s.limits.max_context, LimitExceeded,
                 "git_decoder: " + std::to_string(n_context) + " context tokens, state allows " +
                     std::to_string(s.limits.max_context));
  PIXELLLM_CHECK(n_context <= cfg_.max_positions, LimitExceeded,
                 "git_decoder: context longer than the position table");
  PIXELLLM_CHECK(num_sequences >= 1 && num_sequences <= s.limits.max_sequences, LimitExceeded,
                 "git_decoder: num_sequences " + std::to_string(num_sequences) + " outside 1.." +
                     std::to_string(s.limits.max_sequences));
  check_tokens(context, n_context, cfg_.vocab_size, "context");
  // Trailing padding (id 0, e.g. the mask path's context padded to the official row length) is masked as a key
  // for every row and its own rows are never read: leaving it out of the prefix changes no result (up to float
  // summation order in the prefix attention) and saves its rows (demo refer + mask: 96 context slots, ~10 used).
  while (n_context > 0 && context[n_context - 1] == 0) --n_context;

  const int P = n_visual + n_context;
  float* x = s.b.x.data();
  cpu::linear(visual, n_visual, vis_w_, vis_b_.data(), x);
  cpu::layer_norm(x, n_visual, d, vis_ln_g_.data(), vis_ln_b_.data(), cfg_.visual_ln_eps, x);
  if (n_context > 0) embed(context, n_context, 0, x + static_cast<int64_t>(n_visual) * d);
  uint8_t* valid = s.prefix.valid();
  for (int j = 0; j < P; ++j) valid[j] = j < n_visual ? 1 : (context[j - n_visual] > 0 ? 1 : 0);
  s.prefix.set_length(P);

  float* key_bias = s.key_bias.data();
  for (int j = 0; j < P; ++j) key_bias[j] = valid[j] ? 0.f : kNegInf;
  // The prefix rows attend to each other with the flash-tiled kernel (cpu/attention.h) on the GEMM pool (the request
  // thread's kernels share it, core/thread_pool.h) instead of a dot product per (row, key, head).
  std::shared_ptr<core::ThreadPool> pool = cpu::blas_pool();
  for (int li = 0; li < cfg_.num_layers; ++li) {
    const Layer& L = layers_[li];
    cpu::linear(x, P, L.qkv_w, L.qkv_b.data(), s.b.qkv.data());
    for (int r = 0; r < P; ++r) {
      const float* row = s.b.qkv.data() + static_cast<int64_t>(r) * 3 * d;
      s.prefix.write(li, r, row + d, row + 2 * d);
    }
    for (int h = 0; h < cfg_.num_heads; ++h) runtime::transpose_keys(s.prefix.key(li, h), P, hd, s.kt(li, h), s.kt_ld());
    if (li == cfg_.num_layers - 1) break;  // the prefix's last-layer output is never read: only its K/V are
    cpu::AttentionArgs a;
    a.q_len = P;
    a.kv_len = P;
    a.heads = cfg_.num_heads;
    a.head_dim = hd;
    a.q = s.b.qkv.data();
    a.ldq = 3 * d;
    a.k = a.q + d;
    a.ldk = 3 * d;
    a.v = a.q + 2 * d;
    a.ldv = 3 * d;
    a.out = s.b.ctx.data();
    a.ldo = d;
    a.scale = 1.f / std::sqrt(static_cast<float>(hd));
    a.bias.data = key_bias;  // one row for every query and head: the padded context positions
    a.bias.ld = 0;
    a.bias.head_stride = 0;
    cpu::attention(a, pool.get());
    finish_layer(L, s.b, P);
  }
  for (int i = 0; i < num_sequences; ++i) s.seqs[i].clear();
  s.set_sequences(num_sequences);
  s.set_position(0);
}

void GitDecoder::check_step(const State& s, const int32_t* tokens) const {
  PIXELLLM_CHECK(s.num_sequences() >= 1, Internal, "git_decoder: step before prefill");
  PIXELLLM_CHECK(s.position() < s.limits.max_text, LimitExceeded,
                 "git_decoder: text position " + std::to_string(s.position()) + " beyond the state's max_text " +
                     std::to_string(s.limits.max_text));
  check_tokens(tokens, s.num_sequences(), cfg_.vocab_size, "text");
}

void GitDecoder::attend_text_row(int li, State& s, int r, float* q, float* ctx) const {
  const int d = cfg_.hidden_size;
  s.seqs[r].write(li, s.position(), q + d, q + 2 * d);
  attend_text(li, s, r, s.position(), q, ctx, s.scores.data());
}

void GitDecoder::attend_text(int li, State& s, int r, int pos, float* q, float* ctx, float* sc) const {
  const int d = cfg_.hidden_size, hd = d / cfg_.num_heads;
  const int P = s.prefix.length();
  const uint8_t* pvalid = s.prefix.valid();
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  runtime::KvCache& kv = s.seqs[r];
  for (int h = 0; h < cfg_.num_heads; ++h) {
    float* qh = q + h * hd;
    cpu::vec::scale(qh, scale, hd);
    runtime::key_dots_transposed(qh, s.kt(li, h), P, hd, s.kt_ld(), sc);
    for (int j = 0; j < P; ++j)
      if (!pvalid[j]) sc[j] = kNegInf;
    runtime::key_dots(qh, kv.key(li, h), pos + 1, hd, sc + P);
    cpu::softmax(sc, 1, P + pos + 1);
    float* out = ctx + h * hd;
    runtime::weighted_rows(sc, P, s.prefix.value(li, h), hd, out, false);
    runtime::weighted_rows(sc + P, pos + 1, kv.value(li, h), hd, out, true);
  }
}

namespace {
void advance(runtime::KvCache* seqs, int n, int pos) {
  for (int r = 0; r < n; ++r) {
    seqs[r].valid()[pos] = 1;
    seqs[r].set_length(pos + 1);
  }
}
}  // namespace

void GitDecoder::step(TextDecoderState& base, const int32_t* tokens, float* logits, float* hidden) const {
  State& s = static_cast<State&>(base);
  check_step(s, tokens);
  const int n = s.num_sequences(), pos = s.position(), d = cfg_.hidden_size;
  float* x = s.b.x.data();
  for (int i = 0; i < n; ++i) embed(tokens + i, 1, pos, x + static_cast<int64_t>(i) * d);  // same position each
  run_text_layers(
      s.b, n,
      [&](int li, float* qkv) {
        for (int r = 0; r < n; ++r)
          attend_text_row(li, s, r, qkv + static_cast<int64_t>(r) * 3 * d, s.b.ctx.data() + static_cast<int64_t>(r) * d);
      },
      logits, hidden);
  advance(s.seqs.data(), n, pos);
  s.set_position(pos + 1);
}

void GitDecoder::step_block(TextDecoderState& base, const int32_t* tokens, int n, float* logits,
                            float* hidden) const {
  State& s = static_cast<State&>(base);
  PIXELLLM_CHECK(s.num_sequences() >= 1, Internal, "git_decoder: step before prefill");
  PIXELLLM_CHECK(n >= 1, InvalidArgument, "git_decoder: step_block needs n >= 1");
  const int ns = s.num_sequences(), pos = s.position(), d = cfg_.hidden_size;
  PIXELLLM_CHECK(n <= s.limits.max_text - pos, LimitExceeded,
                 "git_decoder: " + std::to_string(n) + " text tokens from position " + std::to_string(pos) +
                     " beyond the state's max_text " + std::to_string(s.limits.max_text));
  check_tokens(tokens, ns * n, cfg_.vocab_size, "text");
  const int rows = ns * n;
  std::unique_ptr<Rows> own;
  Rows* b = &s.b;
  if (b->x.shape()[0] < rows) {
    own = std::make_unique<Rows>(cfg_, rows);
    b = own.get();
  }
  float* x = b->x.data();
  for (int r = 0; r < ns; ++r)
    embed(tokens + static_cast<int64_t>(r) * n, n, pos, x + static_cast<int64_t>(r) * n * d);
  // Scores of each row (prefix + its causal text keys): one buffer per row, so the rows attend in parallel.
  const int64_t ld = s.prefix.length() + pos + n;
  std::vector<float> scores(static_cast<size_t>(rows) * ld);
  std::shared_ptr<core::ThreadPool> pool = cpu::blas_pool();
  run_text_layers(
      *b, rows,
      [&](int li, float* qkv) {
        for (int row = 0; row < rows; ++row) {  // the block's K/V first: row (r, i) sits at position pos + i
          const float* q = qkv + static_cast<int64_t>(row) * 3 * d;
          s.seqs[row / n].write(li, pos + row % n, q + d, q + 2 * d);
        }
        auto attend = [&](int64_t r0, int64_t r1) {
          for (int64_t row = r0; row < r1; ++row)
            attend_text(li, s, static_cast<int>(row / n), pos + static_cast<int>(row % n), qkv + row * 3 * d,
                        b->ctx.data() + row * d, scores.data() + row * ld);
        };
        if (pool && pool->size() > 1 && rows > 1)
          pool->parallel_for(rows, attend);
        else
          attend(0, rows);
      },
      logits, hidden);
  for (int r = 0; r < ns; ++r) {
    runtime::KvCache& kv = s.seqs[r];
    for (int i = 0; i < n; ++i) kv.valid()[pos + i] = 1;
    kv.set_length(pos + n);
  }
  s.set_position(pos + n);
}

std::unique_ptr<TextDecoderWorkspace> GitDecoder::new_workspace(int max_rows) const {
  PIXELLLM_CHECK(max_rows >= 1 && max_rows <= 4096, LimitExceeded,
                 "git_decoder: workspace rows " + std::to_string(max_rows) + " outside 1..4096");
  return std::make_unique<Workspace>(cfg_, max_rows);
}

void GitDecoder::step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits,
                           float* hidden, TextDecoderWorkspace* workspace) const {
  PIXELLLM_CHECK(count >= 1 && states != nullptr && tokens != nullptr, InvalidArgument,
                 "git_decoder: step_rows without states");
  int total = 0;
  for (int i = 0; i < count; ++i) {
    PIXELLLM_CHECK(states[i] != nullptr, InvalidArgument, "git_decoder: step_rows: null state");
    for (int j = 0; j < i; ++j)
      PIXELLLM_CHECK(states[j] != states[i], InvalidArgument, "git_decoder: step_rows: a state appears twice");
    check_step(static_cast<const State&>(*states[i]), tokens + total);
    total += states[i]->num_sequences();
  }
  if (count == 1) return step(*states[0], tokens, logits, hidden);
  std::unique_ptr<TextDecoderWorkspace> own;
  auto* ws = dynamic_cast<Workspace*>(workspace);
  if (ws == nullptr || ws->max_rows < total) {
    own = new_workspace(total);
    ws = static_cast<Workspace*>(own.get());
  }
  Rows& b = ws->b;
  const int d = cfg_.hidden_size;
  float* x = b.x.data();
  // Embeddings: each row at its own state's position.
  for (int i = 0, row = 0; i < count; ++i) {
    const State& s = static_cast<const State&>(*states[i]);
    for (int r = 0; r < s.num_sequences(); ++r, ++row)
      embed(tokens + row, 1, s.position(), x + static_cast<int64_t>(row) * d);
  }
  // First row of each state (its rows are consecutive).
  std::vector<int> first(count + 1, 0);
  for (int i = 0; i < count; ++i) first[i + 1] = first[i] + states[i]->num_sequences();
  std::shared_ptr<core::ThreadPool> pool = cpu::blas_pool();
  run_text_layers(
      b, total,
      [&](int li, float* qkv) {
        // Attention per state over its own caches, the states spread over the pool (a state's rows share its
        // score buffer, so they stay on one thread).
        auto attend = [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            State& s = static_cast<State&>(*states[i]);
            for (int r = 0, row = first[i]; r < s.num_sequences(); ++r, ++row)
              attend_text_row(li, s, r, qkv + static_cast<int64_t>(row) * 3 * d,
                              b.ctx.data() + static_cast<int64_t>(row) * d);
          }
        };
        if (pool && pool->size() > 1)
          pool->parallel_for(count, attend);
        else
          attend(0, count);
      },
      logits, hidden);
  for (int i = 0; i < count; ++i) {
    State& s = static_cast<State&>(*states[i]);
    advance(s.seqs.data(), s.num_sequences(), s.position());
    s.set_position(s.position() + 1);
  }
}

void GitDecoder::reorder(TextDecoderState& base, const int* parents) const {
  State& s = static_cast<State&>(base);
  const int n = s.num_sequences();
  for (int i = 0; i < n; ++i)
    PIXELLLM_CHECK(parents[i] >= 0 && parents[i] < n, Internal,
                   "git_decoder: reorder parent " + std::to_string(parents[i]) + " out of range");
  for (int i = 0; i < n; ++i) s.spare[i].copy_from(s.seqs[parents[i]]);
  for (int i = 0; i < n; ++i) std::swap(s.seqs[i], s.spare[i]);
}

void GitDecoder::forward(const float* visual, int n_visual, const int32_t* context, int n_context,
                         const int32_t* tokens, int n_tokens, float* logits, float* hidden) const {
  // Text rows attend to the prefix and causally to text, and prefix rows never see text, so the official full
  // pass equals prefill + one step per token, which step_block runs as one pass over the text rows.
  TextDecoderLimits lim;
  lim.max_visual = n_visual;
  lim.max_context = context ? n_context : 0;
  lim.max_text = n_tokens;
  lim.max_sequences = 1;
  auto state = new_state(lim);
  prefill(*state, visual, n_visual, context, n_context, 1);
  step_block(*state, tokens, n_tokens, logits, hidden);
}

}  // namespace pixelllm::model
