#include "model/mask_decoder.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cpu/activations.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"

namespace pixelllm::model {

using core::Tensor;

namespace {

// torch ConvTranspose2d weight (in, out, 2, 2) -> (in, 4 * out) with column (dy * 2 + dx) * out + o.
Tensor pack_conv_t2(const Tensor& w) {
  const int64_t in = w.dim(0), out = w.dim(1);
  Tensor p = Tensor::empty({in, 4 * out});
  for (int64_t c = 0; c < in; ++c)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < 4; ++k) p.data()[c * 4 * out + k * out + o] = w.data()[(c * out + o) * 4 + k];
  return p;
}

// Stride-2 kernel-2 transposed convolution of x (h, w, in) NHWC -> y (2h, 2w, out); tmp holds h*w*4*out floats.
void conv_t2(const float* x, int64_t h, int64_t w, int64_t in, const Tensor& wp, const Tensor& bias, float* y,
             float* tmp) {
  const int64_t out = bias.numel();
  cpu::sgemm(false, false, h * w, 4 * out, in, 1.f, x, in, wp.data(), 4 * out, 0.f, tmp, 4 * out);
  const float* b = bias.data();
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j)
      for (int64_t dy = 0; dy < 2; ++dy)
        for (int64_t dx = 0; dx < 2; ++dx) {
          const float* src = tmp + (i * w + j) * 4 * out + (dy * 2 + dx) * out;
          float* dst = y + ((2 * i + dy) * 2 * w + 2 * j + dx) * out;
          for (int64_t o = 0; o < out; ++o) dst[o] = src[o] + b[o];
        }
}

}  // namespace

MaskDecoderConfig MaskDecoderConfig::from_json(const core::Json& config) {
  core::JsonReader r = core::JsonReader(config, "config.json").object("mask_decoder");
  MaskDecoderConfig c;
  c.transformer_dim = static_cast<int>(r.get_int("transformer_dim", 8, 1 << 14));
  c.depth = static_cast<int>(r.get_int("depth", 0, 64));
  c.num_heads = static_cast<int>(r.get_int("num_heads", 1, 256, 8));
  c.mlp_dim = static_cast<int>(r.get_int("mlp_dim", 1, 1 << 16, 2048));
  c.num_multimask_outputs = static_cast<int>(r.get_int("num_multimask_outputs", 1, 64));
  c.iou_head_depth = static_cast<int>(r.get_int("iou_head_depth", 2, 64));
  c.iou_head_hidden_dim = static_cast<int>(r.get_int("iou_head_hidden_dim", 1, 1 << 16));
  c.multimask_output = r.get_bool("multimask_output", false);
  PIXELLLM_CHECK(c.transformer_dim % 8 == 0, ConfigMismatch,
                 "config.json:mask_decoder.transformer_dim must be a multiple of 8 (upscaling to dim/4, dim/8)");
  return c;
}

MaskDecoder::MaskDecoder(const core::Json& config, const core::SafeTensors& weights)
    : MaskDecoder(MaskDecoderConfig::from_json(config), weights) {}

MaskDecoder::Mlp MaskDecoder::load_mlp(core::PrefixWeights& w, const std::string& name, int64_t in, int64_t hidden,
                                       int64_t out, int depth) const {
  Mlp m;
  for (int i = 0; i < depth; ++i) {
    const std::string n = i == 0 ? "proj_in" : i == depth - 1 ? "proj_out" : "layers." + std::to_string(i - 1);
    const int64_t a = i == 0 ? in : hidden, b = i == depth - 1 ? out : hidden;
    m.w.push_back(w.get(name + "." + n + ".weight", {b, a}));
    m.b.push_back(w.get(name + "." + n + ".bias", {b}));
    m.out.push_back(b);
  }
  return m;
}

void MaskDecoder::run_mlp(const Mlp& m, const float* x, int64_t in, float* y, float* tmp) {
  const int64_t width = *std::max_element(m.out.begin(), m.out.end());
  float* a = tmp;
  float* b = tmp + width;
  const float* cur = x;
  for (size_t i = 0; i < m.w.size(); ++i) {
    const bool last = i + 1 == m.w.size();
    float* dst = last ? y : (cur == a ? b : a);
    cpu::linear(cur, 1, in, m.w[i].data(), m.b[i].data(), m.out[i], dst);
    if (!last) cpu::relu(dst, m.out[i]);
    cur = dst;
    in = m.out[i];
  }
}

MaskDecoder::MaskDecoder(const MaskDecoderConfig& c, const core::SafeTensors& weights) : cfg_(c) {
  const int64_t D = c.transformer_dim, K = c.num_multimask_outputs + 1;
  core::PrefixWeights w(weights, "mask_decoder.");
  iou_token_ = w.get("iou_token.weight", {1, D});
  mask_tokens_ = w.get("mask_tokens.weight", {K, D});
  up1_w_ = pack_conv_t2(w.get("upscale_conv1.weight", {D, D / 4, 2, 2}));
  up1_b_ = w.get("upscale_conv1.bias", {D / 4});
  up_ln_w_ = w.get("upscale_layer_norm.weight", {D / 4});
  up_ln_b_ = w.get("upscale_layer_norm.bias", {D / 4});
  up2_w_ = pack_conv_t2(w.get("upscale_conv2.weight", {D / 4, D / 8, 2, 2}));
  up2_b_ = w.get("upscale_conv2.bias", {D / 8});
  for (int64_t i = 0; i < K; ++i)
    hyper_.push_back(load_mlp(w, "output_hypernetworks_mlps." + std::to_string(i), D, D, D / 8, 3));
  iou_head_ = load_mlp(w, "iou_prediction_head", D, c.iou_head_hidden_dim, K, c.iou_head_depth);
  TwoWayTransformerConfig tc;
  tc.dim = c.transformer_dim;
  tc.depth = c.depth;
  tc.num_heads = c.num_heads;
  tc.mlp_dim = c.mlp_dim;
  transformer_ = std::make_unique<TwoWayTransformer>(tc, w, "transformer.");
  w.finish();
}

void MaskDecoder::forward(const float* image, int64_t h, int64_t w, const float* dense_pe, const float* sparse,
                          int64_t prompts, int64_t S, const float* dense, float* masks, float* iou,
                          core::ThreadPool* pool) const {
  PIXELLLM_CHECK(h > 0 && w > 0 && prompts >= 0 && S >= 0, InvalidArgument,
                 "mask_decoder: empty image grid or negative prompt/token count");
  if (prompts == 0) return;
  const int64_t D = cfg_.transformer_dim, K = cfg_.num_multimask_outputs + 1, T = 1 + K + S;
  const int64_t HW = h * w, D4 = D / 4, D8 = D / 8, UP = 16 * HW;
  const int64_t M = num_output_masks(), first = cfg_.multimask_output ? 1 : 0;
  const int64_t mlp_width = std::max<int64_t>(D, cfg_.iou_head_hidden_dim);

  const size_t n_src = size_t(HW * D);
  core::AlignedVector<float> buf(2 * n_src + 2 * size_t(T * D) + size_t(HW * 4 * D4) + size_t(4 * HW * D4) +
                                 size_t(4 * HW * 4 * D8) + size_t(UP * D8) + size_t(M * D8) + size_t(K) +
                                 2 * size_t(mlp_width) + transformer_->scratch_floats(T, HW));
  float* src = buf.data();
  float* keys = src + n_src;
  float* tok = keys + n_src;
  float* hs = tok + T * D;
  float* tmp1 = hs + T * D;      // (HW, 4 * D4)
  float* up1 = tmp1 + HW * 4 * D4;  // (2h, 2w, D4)
  float* tmp2 = up1 + 4 * HW * D4;  // (4 HW, 4 * D8)
  float* up2 = tmp2 + 4 * HW * 4 * D8;  // (4h, 4w, D8)
  float* hyper = up2 + UP * D8;    // (M, D8)
  float* ious = hyper + M * D8;    // (K)
  float* mlp_tmp = ious + K;
  float* scratch = mlp_tmp + 2 * mlp_width;

  for (int64_t i = 0; i < HW; ++i)
    for (int64_t j = 0; j < D; ++j) src[i * D + j] = image[i * D + j] + dense[j];
  std::memcpy(tok, iou_token_.data(), size_t(D) * sizeof(float));
  std::memcpy(tok + D, mask_tokens_.data(), size_t(K * D) * sizeof(float));
  for (int64_t p = 0; p < prompts; ++p) {
    std::memcpy(tok + (1 + K) * D, sparse + p * S * D, size_t(S * D) * sizeof(float));
    transformer_->forward(tok, T, src, dense_pe, HW, hs, keys, scratch, pool);

    conv_t2(keys, h, w, D, up1_w_, up1_b_, up1, tmp1);
    cpu::layer_norm(up1, 4 * HW, D4, up_ln_w_.data(), up_ln_b_.data(), 1e-6f, up1, pool);
    cpu::gelu(up1, 4 * HW * D4, pool);
    conv_t2(up1, 2 * h, 2 * w, D4, up2_w_, up2_b_, up2, tmp2);
    cpu::gelu(up2, UP * D8, pool);

    for (int64_t m = 0; m < M; ++m) run_mlp(hyper_[size_t(first + m)], hs + (1 + first + m) * D, D,
                                            hyper + m * D8, mlp_tmp);
    cpu::sgemm(false, true, M, UP, D8, 1.f, hyper, D8, up2, D8, 0.f, masks + p * M * UP, UP);
    run_mlp(iou_head_, hs, D, ious, mlp_tmp);
    for (int64_t m = 0; m < M; ++m) iou[p * M + m] = ious[first + m];
  }
}

}  // namespace pixelllm::model
