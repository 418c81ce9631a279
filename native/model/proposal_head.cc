#include "model/proposal_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"

namespace pixelllm::model {

using core::ErrorCode;

namespace {

constexpr const char* kPrefix = "proposal_head.";

// (out, in, 3, 3) torch layout -> (out, 3, 3, in): the im2col column order of an NHWC map.
core::Tensor pack_conv3x3(const core::Tensor& w, int out, int in) {
  core::Tensor p = core::Tensor::empty({out, 9 * static_cast<int64_t>(in)});
  const float* s = w.data();
  float* d = p.data();
  for (int o = 0; o < out; ++o)
    for (int c = 0; c < in; ++c)
      for (int k = 0; k < 9; ++k) d[(static_cast<size_t>(o) * 9 + k) * in + c] = s[(static_cast<size_t>(o) * in + c) * 9 + k];
  return p;
}

}  // namespace

ProposalHeadConfig ProposalHeadConfig::from_json(const core::JsonReader& r) {
  ProposalHeadConfig c;
  c.input_dim = static_cast<int>(r.get_int("input_dim", 1, 1 << 16));
  c.grid_size = static_cast<int>(r.get_int("grid_size", 1, 1024));
  c.stride = static_cast<int>(r.get_int("stride", 1, 8192));
  c.channels = static_cast<int>(r.get_int("channels", 1, 1 << 16));
  c.num_convs = static_cast<int>(r.get_int("num_convs", 0, 64));
  c.num_groups = static_cast<int>(r.get_int("num_groups", 1, 1 << 16, 32));
  c.layer_norm_eps = static_cast<float>(r.get_number("layer_norm_eps", 0, 1, 1e-6));
  c.group_norm_eps = static_cast<float>(r.get_number("group_norm_eps", 0, 1, 1e-6));
  c.pre_nms_topk = static_cast<int>(r.get_int("pre_nms_topk", 1, 1 << 20, 100));
  c.iou_threshold = static_cast<float>(r.get_number("iou_threshold", 0, 1, 0.5));
  c.score_threshold = static_cast<float>(r.get_number("score_threshold", 0, 1, 0.05));
  c.max_detections = static_cast<int>(r.get_int("max_detections", 1, 1 << 20, 16));
  PIXELLLM_CHECK(c.channels % c.num_groups == 0, ConfigMismatch,
                 r.path() + ".channels " + std::to_string(c.channels) + " is not divisible by num_groups " +
                     std::to_string(c.num_groups));
  return c;
}

ProposalHead::ProposalHead(const ProposalHeadConfig& c, const core::SafeTensors& w) : cfg_(c) {
  const std::string p = kPrefix;
  const int64_t ch = c.channels, in = c.input_dim;
  conv1_ = w.get(p + "fpn.conv1.weight", {ch, in, 1, 1}).reshape({ch, in});
  norm1_g_ = w.get(p + "fpn.norm1.weight", {ch});
  norm1_b_ = w.get(p + "fpn.norm1.bias", {ch});
  conv2_ = pack_conv3x3(w.get(p + "fpn.conv2.weight", {ch, ch, 3, 3}), c.channels, c.channels);
  norm2_g_ = w.get(p + "fpn.norm2.weight", {ch});
  norm2_b_ = w.get(p + "fpn.norm2.bias", {ch});
  for (int i = 0; i < c.num_convs; ++i) {
    const std::string conv = p + "tower." + std::to_string(3 * i), gn = p + "tower." + std::to_string(3 * i + 1);
    tower_w_.push_back(pack_conv3x3(w.get(conv + ".weight", {ch, ch, 3, 3}), c.channels, c.channels));
    tower_b_.push_back(w.get(conv + ".bias", {ch}));
    gn_g_.push_back(w.get(gn + ".weight", {ch}));
    gn_b_.push_back(w.get(gn + ".bias", {ch}));
  }
  PIXELLLM_CHECK(!w.has(p + "tower." + std::to_string(3 * c.num_convs) + ".weight"), ConfigMismatch,
                 "proposal_head: the weights have more tower convs than config num_convs " +
                     std::to_string(c.num_convs));
  const core::Tensor box = pack_conv3x3(w.get(p + "bbox_pred.weight", {4, ch, 3, 3}), 4, c.channels);
  const core::Tensor hm = pack_conv3x3(w.get(p + "agn_hm.weight", {1, ch, 3, 3}), 1, c.channels);
  head_w_ = core::Tensor::empty({5, 9 * ch});
  std::memcpy(head_w_.data(), box.data(), box.nbytes());
  std::memcpy(head_w_.data() + box.numel(), hm.data(), hm.nbytes());
  head_b_ = core::Tensor::empty({5});
  const core::Tensor bb = w.get(p + "bbox_pred.bias", {4}), hb = w.get(p + "agn_hm.bias", {1});
  std::memcpy(head_b_.data(), bb.data(), bb.nbytes());
  head_b_.data()[4] = hb.data()[0];
  scale_ = w.get(p + "scale", {1}).data()[0];
}

std::unique_ptr<ProposalHead> ProposalHead::load(const core::JsonReader& section, const core::SafeTensors& weights) {
  return std::make_unique<ProposalHead>(ProposalHeadConfig::from_json(section), weights);
}

size_t ProposalHead::scratch_floats(int h, int w) const noexcept {
  const size_t hw = static_cast<size_t>(h) * w, ch = static_cast<size_t>(cfg_.channels);
  // two activation maps, the im2col buffer, the head output (hw, 5)
  return 2 * hw * ch + hw * 9 * ch + hw * 5;
}

// y (h*w, out) = conv3x3(x (h, w, in)) + bias, zero padding 1; `cols` holds (h*w, 9*in).
void ProposalHead::conv3x3(const float* x, int h, int w, int in, const core::Tensor& packed, const float* bias,
                           int out, float* y, float* cols) const {
  const size_t row = 9 * static_cast<size_t>(in);
  for (int r = 0; r < h; ++r)
    for (int q = 0; q < w; ++q) {
      float* dst = cols + (static_cast<size_t>(r) * w + q) * row;
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx, dst += in) {
          const int sy = r + ky - 1, sx = q + kx - 1;
          if (sy < 0 || sy >= h || sx < 0 || sx >= w)
            std::fill(dst, dst + in, 0.f);
          else
            std::memcpy(dst, x + (static_cast<size_t>(sy) * w + sx) * in, sizeof(float) * in);
        }
    }
  cpu::linear(cols, static_cast<int64_t>(h) * w, static_cast<int64_t>(row), packed.data(), bias, out, y);
}

// torch.nn.GroupNorm (biased variance over the h*w*C/G values of a group) then ReLU, in place on (hw, C).
void ProposalHead::group_norm_relu(float* x, int hw, const core::Tensor& gamma, const core::Tensor& beta) const {
  const int C = cfg_.channels, G = cfg_.num_groups, cg = C / G;
  const double n = static_cast<double>(hw) * cg;
  for (int g = 0; g < G; ++g) {
    double sum = 0, sq = 0;
    for (int i = 0; i < hw; ++i) {
      const float* v = x + static_cast<size_t>(i) * C + g * cg;
      for (int c = 0; c < cg; ++c) sum += v[c];
    }
    const double mean = sum / n;
    for (int i = 0; i < hw; ++i) {
      const float* v = x + static_cast<size_t>(i) * C + g * cg;
      for (int c = 0; c < cg; ++c) sq += (v[c] - mean) * (v[c] - mean);
    }
    const float m = static_cast<float>(mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / n + cfg_.group_norm_eps));
    for (int i = 0; i < hw; ++i) {
      float* v = x + static_cast<size_t>(i) * C + g * cg;
      for (int c = 0; c < cg; ++c) {
        const int k = g * cg + c;
        v[c] = std::max(0.f, (v[c] - m) * rstd * gamma.data()[k] + beta.data()[k]);
      }
    }
  }
}

void ProposalHead::forward(const float* features, int h, int w, float* heatmap, float* box_regs, float* scratch,
                           core::ThreadPool* pool) const {
  PIXELLLM_CHECK(h >= 1 && w >= 1, InvalidArgument, "proposal_head: empty feature map");
  const int C = cfg_.channels, hw = h * w;
  float* a = scratch;
  float* b = a + static_cast<size_t>(hw) * C;
  float* cols = b + static_cast<size_t>(hw) * C;
  float* head = cols + static_cast<size_t>(hw) * 9 * C;
  cpu::linear(features, hw, cfg_.input_dim, conv1_.data(), nullptr, C, a);
  cpu::layer_norm(a, hw, C, norm1_g_.data(), norm1_b_.data(), cfg_.layer_norm_eps, a, pool);
  conv3x3(a, h, w, C, conv2_, nullptr, C, b, cols);
  cpu::layer_norm(b, hw, C, norm2_g_.data(), norm2_b_.data(), cfg_.layer_norm_eps, b, pool);
  for (int i = 0; i < cfg_.num_convs; ++i) {
    conv3x3(b, h, w, C, tower_w_[i], tower_b_[i].data(), C, a, cols);
    group_norm_relu(a, hw, gn_g_[i], gn_b_[i]);
    std::swap(a, b);
  }
  conv3x3(b, h, w, C, head_w_, head_b_.data(), 5, head, cols);
  for (int i = 0; i < hw; ++i) {
    const float* o = head + static_cast<size_t>(i) * 5;
    for (int k = 0; k < 4; ++k) box_regs[static_cast<size_t>(i) * 4 + k] = std::max(0.f, o[k] * scale_);
    heatmap[i] = o[4];
  }
}

void ProposalHead::forward(const float* features, int h, int w, float* heatmap, float* box_regs,
                           core::ThreadPool* pool) const {
  std::vector<float> scratch(scratch_floats(h, w));
  forward(features, h, w, heatmap, box_regs, scratch.data(), pool);
}

}  // namespace pixelllm::model
