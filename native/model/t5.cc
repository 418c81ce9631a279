#include "model/t5.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "cpu/activations.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/softmax.h"
#include "cpu/vec.h"
#include "runtime/kv_cache.h"

namespace pixelllm::model {

using core::ErrorCode;
using core::Tensor;

namespace {

constexpr float kMaskBias = -1e10f;  // t5x: masked logits get -1e10 (added, not -inf)

Tensor concat(std::initializer_list<Tensor> parts) {
  int64_t n = 0;
  for (const Tensor& t : parts) n += t.numel();
  Tensor out = Tensor::empty({n});
  int64_t at = 0;
  for (const Tensor& t : parts) {
    std::memcpy(out.data() + at, t.data(), t.nbytes());
    at += t.numel();
  }
  return out;
}

void check_tokens(const int32_t* t, int n, int vocab, const char* what) {
  for (int i = 0; i < n; ++i)
    PIXELLLM_CHECK(t[i] >= 0 && t[i] < vocab, InvalidText,
                   std::string("t5: ") + what + " token " + std::to_string(t[i]) + " at " + std::to_string(i) +
                       " outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace

T5Config T5Config::from_json(const core::JsonReader& r) {
  T5Config c;
  c.d_model = static_cast<int>(r.get_int("d_model", 1, 1 << 16));
  c.num_heads = static_cast<int>(r.get_int("num_heads", 1, 1024));
  c.d_kv = static_cast<int>(r.get_int("d_kv", 1, 1 << 12));
  c.d_ff = static_cast<int>(r.get_int("d_ff", 1, 1 << 18));
  c.num_encoder_layers = static_cast<int>(r.get_int("num_encoder_layers", 1, 1024));
  c.num_decoder_layers = static_cast<int>(r.get_int("num_decoder_layers", 1, 1024));
  c.vocab_size = static_cast<int>(r.get_int("vocab_size", 1, 1 << 24));
  c.num_buckets = static_cast<int>(r.get_int("relative_attention_num_buckets", 4, 4096, 32));
  c.max_distance = static_cast<int>(r.get_int("relative_attention_max_distance", 2, 1 << 20, 128));
  c.layer_norm_eps = static_cast<float>(r.get_number("layer_norm_eps", 0, 1, 1e-6));
  const std::string proj = r.get_string("feed_forward_proj", 64, "gated-gelu");
  PIXELLLM_CHECK(proj == "gated-gelu", ModelFormat,
                 "config.json:t5.feed_forward_proj: '" + proj + "' not supported (only gated-gelu)");
  PIXELLLM_CHECK(!r.has("lora_merged") || r.get_bool("lora_merged"), ModelFormat,
                 "config.json:t5.lora_merged: unmerged LoRA weights are not supported");
  return c;
}

int T5::relative_bucket(int relative_position, bool bidirectional, int num_buckets, int max_distance) {
  int ret = 0;
  int n = -relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n < 0) ret += num_buckets;
    n = std::abs(n);
  } else {
    n = std::max(n, 0);
  }
  const int max_exact = num_buckets / 2;
  if (n < max_exact) return ret + n;
  // float32 log with t5x's eps, then the float64 scale (as numpy does); truncation toward zero.
  const float lg = std::log(static_cast<float>(n) / static_cast<float>(max_exact) + FLT_EPSILON);
  const double v = static_cast<double>(lg) / std::log(static_cast<double>(max_distance) / max_exact) *
                   (num_buckets - max_exact);
  const int large = std::min(max_exact + static_cast<int>(v), num_buckets - 1);
  return ret + large;
}

// ---- buffers and per-request state ------------------------------------------------------------------------------

struct T5::Buffers {
  Buffers(const T5Config& c, int inner, int rows, int keys)
      : x(Tensor::empty({rows, c.d_model})),
        h(Tensor::empty({rows, c.d_model})),
        qkv(Tensor::empty({rows, 3 * inner})),
        ctx(Tensor::empty({rows, inner})),
        f0(Tensor::empty({rows, c.d_ff})),
        f1(Tensor::empty({rows, c.d_ff})),
        scores(Tensor::empty({keys})) {}
  Tensor x, h, qkv, ctx, f0, f1, scores;
};

class T5::State final : public TextDecoderState {
 public:
  State(const T5Config& c, int inner, const TextDecoderLimits& lim)
      : limits(lim),
        cross(c.num_decoder_layers, c.num_heads, c.d_kv, lim.max_visual + lim.max_context),
        buf(c, inner, std::max(lim.max_visual + lim.max_context, lim.max_sequences),
            std::max(lim.max_visual + lim.max_context, lim.max_text)),
        enc(Tensor::empty({lim.max_visual + lim.max_context, c.d_model})) {
    for (int i = 0; i < lim.max_sequences; ++i) {
      seqs.emplace_back(c.num_decoder_layers, c.num_heads, c.d_kv, lim.max_text);
      spare.emplace_back(c.num_decoder_layers, c.num_heads, c.d_kv, lim.max_text);
    }
    dec_bucket.resize(lim.max_text);
    for (int n = 0; n < lim.max_text; ++n) dec_bucket[n] = relative_bucket(-n, false, c.num_buckets, c.max_distance);
  }

  TextDecoderLimits limits;
  runtime::KvCache cross;  // cross-attention K/V of the encoder output, per decoder layer; valid = encoder mask
  std::vector<runtime::KvCache> seqs, spare;
  Buffers buf;
  Tensor enc;
  std::vector<int> dec_bucket;  // bucket of (key - query) = -n, n = 0..max_text-1

  void set_sequences(int n) { num_sequences_ = n; }
  void set_position(int p) { position_ = p; }
};

// ---- loading ----------------------------------------------------------------------------------------------------

T5::T5(const T5Config& c, const core::SafeTensors& w, cpu::WeightFormat format)
    : cfg_(c), inner_(c.num_heads * c.d_kv) {
  const int64_t d = c.d_model, in = inner_, f = c.d_ff, v = c.vocab_size;
  shared_ = w.get("t5.shared.weight", {v, d});
  auto attention = [&](const std::string& p, bool self) {
    Attention a;
    Tensor q = w.get(p + ".q.weight", {in, d}), k = w.get(p + ".k.weight", {in, d}), vv = w.get(p + ".v.weight", {in, d});
    if (self) {
      a.qkv_w = cpu::PackedWeight::pack(concat({q, k, vv}).data(), 3 * in, d, format);
    } else {
      a.q_w = cpu::PackedWeight::pack(q, format);
      a.kv_w = cpu::PackedWeight::pack(concat({k, vv}).data(), 2 * in, d, format);
    }
    a.o_w = cpu::PackedWeight::pack(w.get(p + ".o.weight", {d, in}), format);
    return a;
  };
  auto mlp_w = [&](const std::string& p) {
    Mlp m;
    m.wi0 = cpu::PackedWeight::pack(w.get(p + ".DenseReluDense.wi_0.weight", {f, d}), format);
    m.wi1 = cpu::PackedWeight::pack(w.get(p + ".DenseReluDense.wi_1.weight", {f, d}), format);
    m.wo = cpu::PackedWeight::pack(w.get(p + ".DenseReluDense.wo.weight", {d, f}), format);
    return m;
  };
  for (int i = 0; i < c.num_encoder_layers; ++i) {
    const std::string b = "t5.encoder.block." + std::to_string(i) + ".layer.";
    EncoderLayer L;
    L.ln_att = w.get(b + "0.layer_norm.weight", {d});
    L.att = attention(b + "0.SelfAttention", true);
    L.ln_mlp = w.get(b + "1.layer_norm.weight", {d});
    L.mlp = mlp_w(b + "1");
    enc_.push_back(std::move(L));
  }
  for (int i = 0; i < c.num_decoder_layers; ++i) {
    const std::string b = "t5.decoder.block." + std::to_string(i) + ".layer.";
    DecoderLayer L;
    L.ln_self = w.get(b + "0.layer_norm.weight", {d});
    L.self_att = attention(b + "0.SelfAttention", true);
    L.ln_cross = w.get(b + "1.layer_norm.weight", {d});
    L.cross_att = attention(b + "1.EncDecAttention", false);
    L.ln_mlp = w.get(b + "2.layer_norm.weight", {d});
    L.mlp = mlp_w(b + "2");
    dec_.push_back(std::move(L));
  }
  PIXELLLM_CHECK(!w.has("t5.encoder.block." + std::to_string(c.num_encoder_layers) + ".layer.0.layer_norm.weight") &&
                     !w.has("t5.decoder.block." + std::to_string(c.num_decoder_layers) + ".layer.0.layer_norm.weight"),
                 ConfigMismatch, "t5: the weights have more layers than the config says");
  enc_rel_ = w.get("t5.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {c.num_buckets, c.num_heads});
  dec_rel_ = w.get("t5.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {c.num_buckets, c.num_heads});
  enc_final_ = w.get("t5.encoder.final_layer_norm.weight", {d});
  dec_final_ = w.get("t5.decoder.final_layer_norm.weight", {d});
  lm_head_ = cpu::PackedWeight::pack(w.get("t5.lm_head.weight", {v, d}), format);
}

std::unique_ptr<T5> T5::load(const core::JsonReader& section, const core::SafeTensors& weights,
                             cpu::WeightFormat format) {
  return std::make_unique<T5>(T5Config::from_json(section), weights, format);
}

std::unique_ptr<TextDecoderState> T5::new_state(const TextDecoderLimits& lim) const {
  PIXELLLM_CHECK(lim.max_visual >= 1 && lim.max_visual <= 4096 && lim.max_context >= 0 && lim.max_context <= 4096,
                 LimitExceeded, "t5: prefix limits out of range (visual 1..4096, context 0..4096)");
  PIXELLLM_CHECK(lim.max_text >= 1 && lim.max_text <= 4096, LimitExceeded,
                 "t5: max_text " + std::to_string(lim.max_text) + " outside 1..4096");
  PIXELLLM_CHECK(lim.max_sequences >= 1 && lim.max_sequences <= 64, LimitExceeded,
                 "t5: max_sequences " + std::to_string(lim.max_sequences) + " outside 1..64");
  return std::make_unique<State>(cfg_, inner_, lim);
}

// ---- compute ----------------------------------------------------------------------------------------------------

void T5::mlp(const Mlp& m, Buffers& b, int rows, float* residual) const {
  const int f = cfg_.d_ff;
  cpu::linear(b.h.data(), rows, m.wi0, nullptr, b.f0.data());
  cpu::linear(b.h.data(), rows, m.wi1, nullptr, b.f1.data());
  cpu::gelu_tanh_mul(b.f0.data(), b.f1.data(), b.f0.data(), static_cast<int64_t>(rows) * f);  // flax gelu = tanh form
  cpu::linear(b.f0.data(), rows, m.wo, nullptr, residual, /*accumulate=*/true);
}

void T5::encode(const float* visual, int n_visual, const int32_t* context, int n_context, Buffers& b, float* enc,
                uint8_t* valid) const {
  const int d = cfg_.d_model, H = cfg_.num_heads, dk = cfg_.d_kv, I = inner_;
  const int S = n_visual + n_context;
  float* x = b.x.data();
  std::memcpy(x, visual, static_cast<size_t>(n_visual) * d * sizeof(float));
  for (int j = 0; j < n_context; ++j)
    std::memcpy(x + static_cast<int64_t>(n_visual + j) * d, shared_.data() + static_cast<int64_t>(context[j]) * d,
                static_cast<size_t>(d) * sizeof(float));
  for (int j = 0; j < S; ++j) valid[j] = j < n_visual ? 1 : (context[j - n_visual] > 0 ? 1 : 0);
  // Bucket per relative offset (key - query) in [-(S-1), S-1].
  std::vector<int> bucket(2 * S - 1);
  for (int r = -(S - 1); r <= S - 1; ++r)
    bucket[r + S - 1] = relative_bucket(r, true, cfg_.num_buckets, cfg_.max_distance);
  float* sc = b.scores.data();
  for (const EncoderLayer& L : enc_) {
    cpu::rms_norm(x, S, d, L.ln_att.data(), cfg_.layer_norm_eps, b.h.data());
    cpu::linear(b.h.data(), S, L.att.qkv_w, nullptr, b.qkv.data());
    for (int q = 0; q < S; ++q) {
      const float* qrow = b.qkv.data() + static_cast<int64_t>(q) * 3 * I;
      for (int h = 0; h < H; ++h) {
        const float* qh = qrow + h * dk;
        for (int k = 0; k < S; ++k) {
          const float* kh = b.qkv.data() + static_cast<int64_t>(k) * 3 * I + I + h * dk;
          const float rel = rel_bias(enc_rel_, bucket[k - q + S - 1], h);
          if (valid[q] && valid[k]) {
            sc[k] = cpu::vec::dot(qh, kh, dk) + rel;
          } else if (valid[q]) {
            sc[k] = -std::numeric_limits<float>::infinity();  // exp(-1e10 - max) == 0 exactly
          } else {
            sc[k] = cpu::vec::dot(qh, kh, dk) + (kMaskBias + rel);  // fully masked row: t5x arithmetic
          }
        }
        cpu::softmax(sc, 1, S);
        float* out = b.ctx.data() + static_cast<int64_t>(q) * I + h * dk;
        std::memset(out, 0, static_cast<size_t>(dk) * sizeof(float));
        for (int k = 0; k < S; ++k)
          if (sc[k] != 0.f) cpu::vec::axpy(sc[k], b.qkv.data() + static_cast<int64_t>(k) * 3 * I + 2 * I + h * dk, out, dk);
      }
    }
    cpu::linear(b.ctx.data(), S, L.att.o_w, nullptr, x, /*accumulate=*/true);
    cpu::rms_norm(x, S, d, L.ln_mlp.data(), cfg_.layer_norm_eps, b.h.data());
    mlp(L.mlp, b, S, x);
  }
  cpu::rms_norm(x, S, d, enc_final_.data(), cfg_.layer_norm_eps, enc);
}

void T5::prefill(TextDecoderState& base, const float* visual, int n_visual, const int32_t* context, int n_context,
                 int num_sequences) const {
  State& s = static_cast<State&>(base);
  if (context == nullptr) n_context = 0;
  PIXELLLM_CHECK(n_visual >= 1 && n_visual <= s.limits.max_visual, LimitExceeded,
                 "t5: " + std::to_string(n_visual) + " visual tokens, state allows 1.." +
                     std::to_string(s.limits.max_visual));
  PIXELLLM_CHECK(n_context >= 0 && n_context <= s.limits.max_context, LimitExceeded,
                 "t5: " + std::to_string(n_context) + " context tokens, state allows " +
                     std::to_string(s.limits.max_context));
  PIXELLLM_CHECK(num_sequences >= 1 && num_sequences <= s.limits.max_sequences, LimitExceeded,
                 "t5: num_sequences " + std::to_string(num_sequences) + " outside 1.." +
                     std::to_string(s.limits.max_sequences));
  check_tokens(context, n_context, cfg_.vocab_size, "context");
  const int S = n_visual + n_context, I = inner_;
  encode(visual, n_visual, context, n_context, s.buf, s.enc.data(), s.cross.valid());
  for (int li = 0; li < cfg_.num_decoder_layers; ++li) {
    cpu::linear(s.enc.data(), S, dec_[li].cross_att.kv_w, nullptr, s.buf.qkv.data());
    for (int j = 0; j < S; ++j) {
      const float* row = s.buf.qkv.data() + static_cast<int64_t>(j) * 2 * I;
      s.cross.write(li, j, row, row + I);
    }
  }
  s.cross.set_length(S);
  for (int i = 0; i < num_sequences; ++i) s.seqs[i].clear();
  s.set_sequences(num_sequences);
  s.set_position(0);
}

void T5::check_step(const State& s, const int32_t* tokens) const {
  PIXELLLM_CHECK(s.num_sequences() >= 1, Internal, "t5: step before prefill");
  PIXELLLM_CHECK(s.position() < s.limits.max_text, LimitExceeded,
                 "t5: text position " + std::to_string(s.position()) + " beyond the state's max_text " +
                     std::to_string(s.limits.max_text));
  check_tokens(tokens, s.num_sequences(), cfg_.vocab_size, "text");
}

void T5::self_attend_row(int li, State& s, int r, const float* qrow, float* ctx) const {
  const int H = cfg_.num_heads, dk = cfg_.d_kv, I = inner_, pos = s.position();
  float* sc = s.buf.scores.data();
  runtime::KvCache& kv = s.seqs[r];
  kv.write(li, pos, qrow + I, qrow + 2 * I);
  const uint8_t* valid = kv.valid();
  for (int h = 0; h < H; ++h) {
    const float* K = kv.key(li, h);
    for (int j = 0; j <= pos; ++j)
      sc[j] = valid[j] ? cpu::vec::dot(qrow + h * dk, K + static_cast<int64_t>(j) * dk, dk) +
                             rel_bias(dec_rel_, s.dec_bucket[pos - j], h)
                       : -std::numeric_limits<float>::infinity();
    cpu::softmax(sc, 1, pos + 1);
    runtime::weighted_rows(sc, pos + 1, kv.value(li, h), dk, ctx + h * dk, false);
  }
}

void T5::cross_attend_row(int li, State& s, const float* q, float* ctx) const {
  const int H = cfg_.num_heads, dk = cfg_.d_kv, S = s.cross.length();
  const uint8_t* evalid = s.cross.valid();
  float* sc = s.buf.scores.data();
  for (int h = 0; h < H; ++h) {
    const float* K = s.cross.key(li, h);
    for (int j = 0; j < S; ++j)
      sc[j] = evalid[j] ? cpu::vec::dot(q + h * dk, K + static_cast<int64_t>(j) * dk, dk)
                        : -std::numeric_limits<float>::infinity();
    cpu::softmax(sc, 1, S);
    runtime::weighted_rows(sc, S, s.cross.value(li, h), dk, ctx + h * dk, false);
  }
}

void T5::step_states(State* const* states, int count, int total, const int32_t* tokens, float* logits,
                     float* hidden, Buffers& b) const {
  const int d = cfg_.d_model, I = inner_;
  float* y = b.x.data();
  for (int i = 0, row = 0; i < count; ++i) {
    State& s = *states[i];
    const int pos = s.position();
    for (int r = 0; r < s.num_sequences(); ++r, ++row) {
      std::memcpy(y + static_cast<int64_t>(row) * d, shared_.data() + static_cast<int64_t>(tokens[row]) * d,
                  static_cast<size_t>(d) * sizeof(float));
      uint8_t* valid = s.seqs[r].valid();
      if (pos > 0) valid[pos - 1] = tokens[row] != 0 ? 1 : 0;  // official target padding of the previous position
      valid[pos] = 1;
    }
  }
  // Runs fn(state, sequence, row) over every row, in order.
  auto each_row = [&](auto&& fn) {
    for (int i = 0, row = 0; i < count; ++i)
      for (int r = 0; r < states[i]->num_sequences(); ++r, ++row) fn(*states[i], r, row);
  };
  for (int li = 0; li < cfg_.num_decoder_layers; ++li) {
    const DecoderLayer& L = dec_[li];
    // self-attention over each sequence's cache
    cpu::rms_norm(y, total, d, L.ln_self.data(), cfg_.layer_norm_eps, b.h.data());
    cpu::linear(b.h.data(), total, L.self_att.qkv_w, nullptr, b.qkv.data());
    each_row([&](State& s, int r, int row) {
      self_attend_row(li, s, r, b.qkv.data() + static_cast<int64_t>(row) * 3 * I,
                      b.ctx.data() + static_cast<int64_t>(row) * I);
    });
    cpu::linear(b.ctx.data(), total, L.self_att.o_w, nullptr, y, /*accumulate=*/true);
    // cross-attention over each state's encoder cache
    cpu::rms_norm(y, total, d, L.ln_cross.data(), cfg_.layer_norm_eps, b.h.data());
    cpu::linear(b.h.data(), total, L.cross_att.q_w, nullptr, b.qkv.data());
    each_row([&](State& s, int, int row) {
      cross_attend_row(li, s, b.qkv.data() + static_cast<int64_t>(row) * I,
                       b.ctx.data() + static_cast<int64_t>(row) * I);
    });
    cpu::linear(b.ctx.data(), total, L.cross_att.o_w, nullptr, y, /*accumulate=*/true);
    cpu::rms_norm(y, total, d, L.ln_mlp.data(), cfg_.layer_norm_eps, b.h.data());
    mlp(L.mlp, b, total, y);
  }
  for (int i = 0; i < count; ++i) {
    State& s = *states[i];
    for (int r = 0; r < s.num_sequences(); ++r) s.seqs[r].set_length(s.position() + 1);
    s.set_position(s.position() + 1);
  }
  float* out = hidden ? hidden : b.h.data();
  cpu::rms_norm(y, total, d, dec_final_.data(), cfg_.layer_norm_eps, out);
  if (logits) cpu::linear(out, total, lm_head_, nullptr, logits);
}

void T5::step(TextDecoderState& base, const int32_t* tokens, float* logits, float* hidden) const {
  State* s = &static_cast<State&>(base);
  check_step(*s, tokens);
  step_states(&s, 1, s->num_sequences(), tokens, logits, hidden, s->buf);
}

class T5::Workspace final : public TextDecoderWorkspace {
 public:
  Workspace(const T5Config& c, int inner, int rows) : max_rows(rows), b(c, inner, rows, 1) {}
  int max_rows;
  Buffers b;  // scores unused: attention scores go to each state's own buffer
};

std::unique_ptr<TextDecoderWorkspace> T5::new_workspace(int max_rows) const {
  PIXELLLM_CHECK(max_rows >= 1 && max_rows <= 4096, LimitExceeded,
                 "t5: workspace rows " + std::to_string(max_rows) + " outside 1..4096");
  return std::make_unique<Workspace>(cfg_, inner_, max_rows);
}

void T5::step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits, float* hidden,
                   TextDecoderWorkspace* workspace) const {
  PIXELLLM_CHECK(count >= 1 && states != nullptr && tokens != nullptr, InvalidArgument,
                 "t5: step_rows without states");
  std::vector<State*> ss(static_cast<size_t>(count));
  int total = 0;
  for (int i = 0; i < count; ++i) {
    PIXELLLM_CHECK(states[i] != nullptr, InvalidArgument, "t5: step_rows: null state");
    for (int j = 0; j < i; ++j)
      PIXELLLM_CHECK(states[j] != states[i], InvalidArgument, "t5: step_rows: a state appears twice");
    ss[i] = &static_cast<State&>(*states[i]);
    check_step(*ss[i], tokens + total);
    total += ss[i]->num_sequences();
  }
  if (count == 1) return step_states(ss.data(), 1, total, tokens, logits, hidden, ss[0]->buf);
  std::unique_ptr<TextDecoderWorkspace> own;
  auto* ws = dynamic_cast<Workspace*>(workspace);
  if (ws == nullptr || ws->max_rows < total) {
    own = new_workspace(total);
    ws = static_cast<Workspace*>(own.get());
  }
  step_states(ss.data(), count, total, tokens, logits, hidden, ws->b);
}

void T5::reorder(TextDecoderState& base, const int* parents) const {
  State& s = static_cast<State&>(base);
  const int n = s.num_sequences();
  for (int i = 0; i < n; ++i)
    PIXELLLM_CHECK(parents[i] >= 0 && parents[i] < n, Internal,
                   "t5: reorder parent " + std::to_string(parents[i]) + " out of range");
  for (int i = 0; i < n; ++i) s.spare[i].copy_from(s.seqs[parents[i]]);
  for (int i = 0; i < n; ++i) std::swap(s.seqs[i], s.spare[i]);
}

void T5::forward(const float* visual, int n_visual, const int32_t* context, int n_context, const int32_t* tokens,
                 int n_tokens, float* logits, float* hidden) const {
  if (context == nullptr) n_context = 0;
  PIXELLLM_CHECK(n_visual >= 1 && n_context >= 0 && n_tokens >= 1 && n_visual + n_context <= 8192 &&
                     n_tokens <= 4096,
                 LimitExceeded, "t5: forward sizes out of range");
  check_tokens(context, n_context, cfg_.vocab_size, "context");
  check_tokens(tokens, n_tokens, cfg_.vocab_size, "text");
  const int S = n_visual + n_context, L = n_tokens, d = cfg_.d_model, H = cfg_.num_heads, dk = cfg_.d_kv, I = inner_;
  Buffers b(cfg_, inner_, std::max(S, L), std::max(S, L));
  Tensor enc = Tensor::empty({S, d});
  std::vector<uint8_t> evalid(S);
  encode(visual, n_visual, context, n_context, b, enc.data(), evalid.data());
  Tensor ekv = Tensor::empty({S, 2 * I});

  std::vector<uint8_t> tv(L);  // official decoder target validity: tokens[i+1] > 0, last = 0
  for (int i = 0; i < L; ++i) tv[i] = (i + 1 < L && tokens[i + 1] > 0) ? 1 : 0;
  std::vector<int> bucket(2 * L - 1);  // by key - query in [-(L-1), L-1]
  for (int r = -(L - 1); r <= L - 1; ++r)
    bucket[r + L - 1] = relative_bucket(r, false, cfg_.num_buckets, cfg_.max_distance);

  float* y = b.x.data();
  for (int i = 0; i < L; ++i)
    std::memcpy(y + static_cast<int64_t>(i) * d, shared_.data() + static_cast<int64_t>(tokens[i]) * d,
                static_cast<size_t>(d) * sizeof(float));
  float* sc = b.scores.data();
  const float ninf = -std::numeric_limits<float>::infinity();
  for (const DecoderLayer& Ly : dec_) {
    cpu::rms_norm(y, L, d, Ly.ln_self.data(), cfg_.layer_norm_eps, b.h.data());
    cpu::linear(b.h.data(), L, Ly.self_att.qkv_w, nullptr, b.qkv.data());
    for (int q = 0; q < L; ++q) {
      for (int h = 0; h < H; ++h) {
        const float* qh = b.qkv.data() + static_cast<int64_t>(q) * 3 * I + h * dk;
        for (int k = 0; k < L; ++k) {
          const float* kh = b.qkv.data() + static_cast<int64_t>(k) * 3 * I + I + h * dk;
          const float rel = rel_bias(dec_rel_, bucket[k - q + L - 1], h);
          if (tv[q])
            sc[k] = (k <= q && tv[k]) ? cpu::vec::dot(qh, kh, dk) + rel : ninf;
          else
            sc[k] = cpu::vec::dot(qh, kh, dk) + (kMaskBias + rel);
        }
        cpu::softmax(sc, 1, L);
        float* out = b.ctx.data() + static_cast<int64_t>(q) * I + h * dk;
        std::memset(out, 0, static_cast<size_t>(dk) * sizeof(float));
        for (int k = 0; k < L; ++k)
          if (sc[k] != 0.f) cpu::vec::axpy(sc[k], b.qkv.data() + static_cast<int64_t>(k) * 3 * I + 2 * I + h * dk, out, dk);
      }
    }
    cpu::linear(b.ctx.data(), L, Ly.self_att.o_w, nullptr, y, /*accumulate=*/true);

    cpu::rms_norm(y, L, d, Ly.ln_cross.data(), cfg_.layer_norm_eps, b.h.data());
    cpu::linear(b.h.data(), L, Ly.cross_att.q_w, nullptr, b.qkv.data());
    cpu::linear(enc.data(), S, Ly.cross_att.kv_w, nullptr, ekv.data());
    for (int q = 0; q < L; ++q) {
      for (int h = 0; h < H; ++h) {
        const float* qh = b.qkv.data() + static_cast<int64_t>(q) * I + h * dk;
        for (int k = 0; k < S; ++k) {
          const float* kh = ekv.data() + static_cast<int64_t>(k) * 2 * I + h * dk;
          if (tv[q])
            sc[k] = evalid[k] ? cpu::vec::dot(qh, kh, dk) : ninf;
          else
            sc[k] = cpu::vec::dot(qh, kh, dk) + kMaskBias;
        }
        cpu::softmax(sc, 1, S);
        float* out = b.ctx.data() + static_cast<int64_t>(q) * I + h * dk;
        std::memset(out, 0, static_cast<size_t>(dk) * sizeof(float));
        for (int k = 0; k < S; ++k)
          if (sc[k] != 0.f) cpu::vec::axpy(sc[k], ekv.data() + static_cast<int64_t>(k) * 2 * I + I + h * dk, out, dk);
      }
    }
    cpu::linear(b.ctx.data(), L, Ly.cross_att.o_w, nullptr, y, /*accumulate=*/true);
    cpu::rms_norm(y, L, d, Ly.ln_mlp.data(), cfg_.layer_norm_eps, b.h.data());
    mlp(Ly.mlp, b, L, y);
  }
  Tensor fin = Tensor::empty({L, d});
  cpu::rms_norm(y, L, d, dec_final_.data(), cfg_.layer_norm_eps, fin.data());
  if (hidden) std::memcpy(hidden, fin.data(), fin.nbytes());
  if (logits) cpu::linear(fin.data(), L, lm_head_, nullptr, logits);
}

}  // namespace pixelllm::model
