// SAM two-way transformer, shared by the prompt adapter (at prompt_adapter.transformer_dim), the mask adapter and the
// SAM mask decoder (both at 256 dims). Official scenic baselines/segment_anything/modeling/transformer.py
// (TwoWayTransformer, TwoWayAttentionBlock, Attention); reference: the Hugging Face SamTwoWayTransformer that
// engines/reference/pixelllm_ref/mask_decoder.py builds (`two_way_config`), whose names it reads:
//   <prefix>layers.{i}.{self_attn,cross_attn_token_to_image,cross_attn_image_to_token}.{q,k,v,out}_proj.{weight,bias}
//   <prefix>layers.{i}.layer_norm{1..4}.{weight,bias}, <prefix>layers.{i}.mlp.lin{1,2}.{weight,bias}
//   <prefix>final_attn_token_to_image.*, <prefix>layer_norm_final_attn.*
//
// Math (tokens q (T,D) with their embedding P = the input tokens, image keys k (N,D) with positional encoding E):
//   layer i: q = (i == 0) ? SA(q, q, q) : q + SA(q+P, q+P, q);   q = LN1(q)
//            q = LN2(q + X_t2i(q+P, k+E, k));  q = LN3(q + lin2(relu(lin1(q))))
//            k = LN4(k + X_i2t(k+E, q+P, q))
//   final:   q = LN_final(q + X_t2i(q+P, k+E, k))
// Attention(query, key, value): multi-head softmax(Wq x . Wk y / sqrt(head_dim)) Wv z, then out_proj; the cross
// attentions project to dim / downsample (official default 2), self attention keeps dim. LayerNorm eps 1e-5.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/prefix_weights.h"
#include "core/tensor.h"
#include "cpu/packed_linear.h"

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::model {

struct TwoWayTransformerConfig {
  int dim = 256;
  int depth = 2;
  int num_heads = 8;
  int mlp_dim = 2048;
  int downsample = 2;  // cross attentions project to dim / downsample
  float layer_norm_eps = 1e-5f;

  // CONFIG_MISMATCH when the heads do not divide the attention widths or a size is not positive.
  void validate(const std::string& what) const;
};

class TwoWayTransformer {
 public:
  // Reads the tensors under `prefix` (e.g. "mask_decoder.transformer.") through `w` (shape-checked).
  TwoWayTransformer(const TwoWayTransformerConfig& config, core::PrefixWeights& w, const std::string& prefix);

  const TwoWayTransformerConfig& config() const noexcept { return cfg_; }

  // Floats of scratch forward() needs for `tokens` tokens and `keys` image positions.
  size_t scratch_floats(int64_t tokens, int64_t keys) const noexcept;

  // point_embeddings (T, dim) (also the token positional embedding P), image (N, dim), image_pe (N, dim) or null
  // for zeros -> queries (T, dim), keys (N, dim) (caller buffers; must not alias the inputs). `scratch` holds
  // scratch_floats(T, N). Const and reentrant: concurrent calls with distinct buffers are safe. GEMMs run on the
  // calling thread, the attention kernel on `pool`.
  void forward(const float* point_embeddings, int64_t tokens, const float* image, const float* image_pe,
               int64_t keys, float* queries_out, float* keys_out, float* scratch,
               core::ThreadPool* pool = nullptr) const;
  // Same, allocating its scratch.
  void forward(const float* point_embeddings, int64_t tokens, const float* image, const float* image_pe,
               int64_t keys, float* queries_out, float* keys_out, core::ThreadPool* pool = nullptr) const;

 private:
  struct Attention {
    cpu::PackedWeight q_w, k_w, v_w, o_w;  // packed once at load (cpu/packed_linear.h)
    core::Tensor q_b, k_b, v_b, o_b;
    int internal = 0;
  };
  struct Layer {
    Attention self_attn, t2i, i2t;
    core::Tensor ln_w[4], ln_b[4];
    cpu::PackedWeight lin1_w, lin2_w;
    core::Tensor lin1_b, lin2_b;
  };
  struct Buffers;

  Attention load_attention(core::PrefixWeights& w, const std::string& name, int internal) const;
  // out (nq, dim) = attention of (xq (nq), xk (nk), xv (nk)); accumulate adds to out.
  void attend(const Attention& a, const float* xq, int64_t nq, const float* xk, const float* xv, int64_t nk,
              float* out, bool accumulate, const Buffers& b, core::ThreadPool* pool) const;

  TwoWayTransformerConfig cfg_;
  std::vector<Layer> layers_;
  Attention final_;
  core::Tensor final_ln_w_, final_ln_b_;
};

}  // namespace pixelllm::model
