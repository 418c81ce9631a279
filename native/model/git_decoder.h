// GIT text decoder (BERT layers as a prefix-LM), the `git_decoder` component.
//
// Follows the official scenic `pixel_llm/modeling/text_decoder.py` (TransformerDecoderTextualHead,
// BertEncoderAsDecoder, WordAndPositionalEmbedding) and its PyTorch port `engines/reference/pixelllm_ref/
// git_decoder.py`, whose converted weight names it reads (`git_decoder.encoder.layer.N.attention.self.query.weight`
// ..., torch Linear layout (out, in)):
//   prefix = [LN_1e-5(visual @ Wp + bp) ; LN_1e-8(word[ctx] + pos[0..Lc))]  (context id 0 = padding, masked)
//   text   =  LN_1e-8(word[tok] + pos[i])                                  (positions restart at 0)
//   each BERT layer: a = LN_1e-5(x + Wo·softmax((q·hd^-0.5) k^T + mask) v);  x = LN_1e-12(a + W2 gelu_erf(W1 a))
//   mask: every row sees the valid prefix keys; prefix rows never see text; text rows see text causally.
//   logits = x_text @ Wout + bout; the hidden state is x_text (the point head input).
// Because prefix rows never attend to text, the prefix K/V are computed once (prefill) and every text step only
// attends over the cache: no recomputation.
#pragma once

#include <memory>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"
#include "model/text_decoder.h"

namespace pixelllm::model {

struct GitDecoderConfig {
  int hidden_size = 0, num_heads = 0, num_layers = 0, intermediate_size = 0;
  int max_positions = 0, vocab_size = 0, visual_dim = 0;
  float attention_ln_eps = 1e-5f, output_ln_eps = 1e-12f, embedding_ln_eps = 1e-8f, visual_ln_eps = 1e-5f;

  // Reads config.json's "git_decoder" section (MODEL_FORMAT / LIMIT_EXCEEDED with the key path).
  static GitDecoderConfig from_json(const core::JsonReader& section);
};

class GitDecoder final : public TextDecoder {
 public:
  // Reads and packs the weights (fused QKV). MODEL_FORMAT for missing tensors, CONFIG_MISMATCH for bad shapes.
  // format: how the layers' and the vocabulary projection's weights are stored (cpu/packed_linear.h).
  GitDecoder(const GitDecoderConfig& config, const core::SafeTensors& weights,
             cpu::WeightFormat format = cpu::WeightFormat::f32);
  // section = JsonReader(config, "config.json").object("git_decoder")
  static std::unique_ptr<GitDecoder> load(const core::JsonReader& section, const core::SafeTensors& weights,
                                          cpu::WeightFormat format = cpu::WeightFormat::f32);

  const GitDecoderConfig& config() const noexcept { return cfg_; }

  const char* name() const noexcept override { return "git_decoder"; }
  int hidden_size() const noexcept override { return cfg_.hidden_size; }
  int vocab_size() const noexcept override { return cfg_.vocab_size; }
  int visual_dim() const noexcept override { return cfg_.visual_dim; }
  int max_text_positions() const noexcept override { return cfg_.max_positions; }
  bool forward_continues_steps() const noexcept override { return true; }

  std::unique_ptr<TextDecoderState> new_state(const TextDecoderLimits& limits) const override;
  void prefill(TextDecoderState& state, const float* visual, int n_visual, const int32_t* context, int n_context,
               int num_sequences) const override;
  void step(TextDecoderState& state, const int32_t* tokens, float* logits, float* hidden) const override;
  // All n text rows per sequence through each layer at once (one GEMM per projection), K/V written for the
  // whole block before each row attends to the prefix and to the text rows up to its own.
  void step_block(TextDecoderState& state, const int32_t* tokens, int n, float* logits, float* hidden) const override;
  std::unique_ptr<TextDecoderWorkspace> new_workspace(int max_rows) const override;
  // One GEMM per projection per layer over the rows of every state, attention per row over its own caches.
  void step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits, float* hidden,
                 TextDecoderWorkspace* workspace) const override;
  void reorder(TextDecoderState& state, const int* parents) const override;
  void forward(const float* visual, int n_visual, const int32_t* context, int n_context, const int32_t* tokens,
               int n_tokens, float* logits, float* hidden) const override;

 private:
  // The decode-step weights are packed once at load (cpu/packed_linear.h); biases and norms stay tensors.
  struct Layer {
    cpu::PackedWeight qkv_w;  // (3D, D): query rows, then key rows, then value rows
    core::Tensor qkv_b;       // (3D)
    cpu::PackedWeight out_w, inter_w, out2_w;
    core::Tensor out_b, ln1_g, ln1_b;
    core::Tensor inter_b, out2_b, ln2_g, ln2_b;
  };
  struct Rows;       // activations of a set of rows (x, qkv, ctx, att, inter)
  class State;
  class Workspace;

  void embed(const int32_t* tokens, int n, int start_position, float* out) const;
  // Checks a step of `state` (prefilled, position < max_text, tokens in the vocabulary) without changing it.
  void check_step(const State& state, const int32_t* tokens) const;
  // Self-attention of text row `r` of `state` at its position for layer li: writes its K/V into the row's cache
  // and ctx (D) from the prefix + text caches. q: the row's fused (3D) projection (q is scaled in place).
  void attend_text_row(int li, State& state, int r, float* q, float* ctx) const;
  // The attention half of it for text position `pos` of row r, whose K/V (and those of the positions before it)
  // are in the cache: scores (prefix + pos + 1 floats) is the caller's scratch.
  void attend_text(int li, State& state, int r, int pos, float* q, float* ctx, float* scores) const;
  // Post-attention half of a BERT layer over `rows` rows: x := LN2(a + FFN(a)), a = LN1(x + dense(ctx)).
  void finish_layer(const Layer& layer, Rows& b, int rows) const;
  // The layer loop of every text pass after the prefill (step, step_block, step_rows) over the embedded rows in
  // b.x: per layer the fused qkv product over all rows, then attend(li, qkv) (the caller's K/V writes and
  // attention into b.ctx), then finish_layer; at the end the hidden states and logits of the rows (either null).
  template <class Attend>
  void run_text_layers(Rows& b, int rows, Attend&& attend, float* logits, float* hidden) const;

  GitDecoderConfig cfg_;
  cpu::PackedWeight vis_w_;  // float32 panels in either weight format (prefill only: no bytes to save per step)
  core::Tensor vis_b_, vis_ln_g_, vis_ln_b_;
  core::Tensor word_, pos_, emb_ln_g_, emb_ln_b_;
  std::vector<Layer> layers_;
  cpu::PackedWeight out_w_;
  core::Tensor out_b_;
};

}  // namespace pixelllm::model
