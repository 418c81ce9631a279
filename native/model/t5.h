// T5 text head (encoder over [visual tokens, context tokens], decoder over text tokens), the `t5` component.
//
// Follows the official scenic `pixel_llm/modeling/t5_text_head.py` (CustomTransformer, CustomEncoder/Decoder,
// LoRADenseGeneral) on t5x `examples/t5/layers.py`, through its PyTorch port `engines/reference/pixelllm_ref/t5.py`
// whose converted names it reads (Hugging Face T5 names: `t5.encoder.block.N.layer.0.SelfAttention.q.weight`,
// `t5.decoder.block.N.layer.1.EncDecAttention.k.weight`, `t5.lm_head.weight`, ...; LoRA already merged into q/v):
//   RMS LayerNorm (eps 1e-6, scale only) before each sub-block, residual adds, final RMS norm per stack;
//   attention without 1/sqrt(d) scaling, logits + relative position bias (32 buckets, max distance 128,
//   bidirectional in the encoder, causal in the decoder, one table per stack) + mask bias (0 / -1e10, so a fully
//   masked row attends uniformly, exactly as t5x);
//   MLP = wo(gelu_tanh(wi_0 x) * wi_1 x); logits = lm_head(hidden) with hidden = the decoder's final norm output.
// Masks (official): encoder valid = [visual: 1, context: id > 0]; decoder "target" validity tv[i] = tokens[i+1] > 0
// (tv[last] = 0) masks self-attention keys/rows and cross-attention rows. During the official decode loop every
// unwritten position holds EOS, so in step(): the current row is valid and key j < current is valid iff the
// token fed at j+1 is not 0 -- the KV cache keeps that flag per position.
#pragma once

#include <memory>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"
#include "model/text_decoder.h"

namespace pixelllm::model {

struct T5Config {
  int d_model = 0, num_heads = 0, d_kv = 0, d_ff = 0;
  int num_encoder_layers = 0, num_decoder_layers = 0, vocab_size = 0;
  int num_buckets = 32, max_distance = 128;
  float layer_norm_eps = 1e-6f;

  // Reads config.json's "t5" section (MODEL_FORMAT / LIMIT_EXCEEDED with the key path; only gated-gelu).
  static T5Config from_json(const core::JsonReader& section);
};

class T5 final : public TextDecoder {
 public:
  // format: how the layers' and lm_head's weights are stored (cpu/packed_linear.h).
  T5(const T5Config& config, const core::SafeTensors& weights, cpu::WeightFormat format = cpu::WeightFormat::f32);
  // section = JsonReader(config, "config.json").object("t5")
  static std::unique_ptr<T5> load(const core::JsonReader& section, const core::SafeTensors& weights,
                                  cpu::WeightFormat format = cpu::WeightFormat::f32);

  const T5Config& config() const noexcept { return cfg_; }

  const char* name() const noexcept override { return "t5"; }
  int hidden_size() const noexcept override { return cfg_.d_model; }
  int vocab_size() const noexcept override { return cfg_.vocab_size; }
  int visual_dim() const noexcept override { return cfg_.d_model; }
  int max_text_positions() const noexcept override { return 1 << 16; }

  std::unique_ptr<TextDecoderState> new_state(const TextDecoderLimits& limits) const override;
  void prefill(TextDecoderState& state, const float* visual, int n_visual, const int32_t* context, int n_context,
               int num_sequences) const override;
  void step(TextDecoderState& state, const int32_t* tokens, float* logits, float* hidden) const override;
  // In-flight batching: per decoder layer one self-qkv, self-out, cross-q, cross-out and 3 MLP products over the
  // rows of all states, self- and cross-attention per row on its own state's caches; one lm_head product. Every
  // state is checked before any changes.
  std::unique_ptr<TextDecoderWorkspace> new_workspace(int max_rows) const override;
  void step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits, float* hidden,
                 TextDecoderWorkspace* workspace) const override;
  void reorder(TextDecoderState& state, const int* parents) const override;
  void forward(const float* visual, int n_visual, const int32_t* context, int n_context, const int32_t* tokens,
               int n_tokens, float* logits, float* hidden) const override;

  // t5x RelativePositionBiases._relative_position_bucket for relative_position = key - query.
  static int relative_bucket(int relative_position, bool bidirectional, int num_buckets, int max_distance);

 private:
  // Projection weights are packed once at load (cpu/packed_linear.h).
  struct Attention {
    cpu::PackedWeight qkv_w;  // self: (3I, D) q, k, v rows; cross: q (I, D) in q_w and k, v (2I, D) in kv_w
    cpu::PackedWeight q_w, kv_w, o_w;  // o: (D, I)
  };
  struct Mlp {
    cpu::PackedWeight wi0, wi1, wo;  // (F, D), (F, D), (D, F)
  };
  struct EncoderLayer {
    core::Tensor ln_att, ln_mlp;
    Attention att;
    Mlp mlp;
  };
  struct DecoderLayer {
    core::Tensor ln_self, ln_cross, ln_mlp;
    Attention self_att, cross_att;
    Mlp mlp;
  };
  struct Buffers;
  class State;
  class Workspace;

  // Encoder over [visual; shared[context]] -> enc (S, D) final-normed, valid (S).
  void encode(const float* visual, int n_visual, const int32_t* context, int n_context, Buffers& b, float* enc,
              uint8_t* valid) const;
  void mlp(const Mlp& m, Buffers& b, int rows, float* residual) const;
  void check_step(const State& s, const int32_t* tokens) const;
  // One token for every row of `count` checked states (rows in state order) with row buffers `b` (>= total rows).
  void step_states(State* const* states, int count, int total, const int32_t* tokens, float* logits, float* hidden,
                   Buffers& b) const;
  // Attention of one row: self over its sequence cache (after writing this position's K/V), cross over the
  // encoder cache; q points at the row's query, ctx (inner) receives the heads' outputs.
  void self_attend_row(int li, State& s, int r, const float* qkv_row, float* ctx) const;
  void cross_attend_row(int li, State& s, const float* q, float* ctx) const;
  float rel_bias(const core::Tensor& table, int bucket, int head) const {
    return table.data()[static_cast<int64_t>(bucket) * cfg_.num_heads + head];
  }

  T5Config cfg_;
  int inner_ = 0;  // num_heads * d_kv
  core::Tensor shared_, enc_rel_, dec_rel_, enc_final_, dec_final_;
  cpu::PackedWeight lm_head_;
  std::vector<EncoderLayer> enc_;
  std::vector<DecoderLayer> dec_;
};

}  // namespace pixelllm::model
