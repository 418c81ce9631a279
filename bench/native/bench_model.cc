#include "bench_model.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "cpu/gemm.h"
#include "model/preprocess.h"

namespace pixelllm::bench {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

BenchModel::BenchModel(const std::string& dir, int threads, cpu::WeightFormat decoder_weights,
                       cpu::WeightFormat encoder_weights)
    : pool_(cpu::blas_set_threads(threads)), decoder_weights_(decoder_weights) {
  config_ = core::parse_json_file(dir + "/config.json");
  weights_ = core::SafeTensors::open(dir + "/model.safetensors");
  core::JsonReader top(config_, "config.json");
  PIXELLLM_CHECK(top.get_string("text_decoder", 64) == "git_decoder", ConfigMismatch,
                 "bench: only the git_decoder head is benchmarked");
  image_size_ = static_cast<int>(top.get_int("image_size", 1, 16384));
  bos_ = static_cast<int32_t>(top.get_int("bos_token_id", 0, 1 << 24));
  eos_ = static_cast<int32_t>(top.get_int("eos_token_id", 0, 1 << 24));
  PIXELLLM_CHECK(encoder_weights != cpu::WeightFormat::bf16_dot || cpu::bf16_dot_supported(), BackendUnavailable,
                 "bench: bf16 encoders need AVX512-BF16");
  sam_ = std::make_unique<model::SamImageEncoder>(top.object("sam_image_encoder"), *weights_, "sam_image_encoder.",
                                                  encoder_weights);
  eva_ = std::make_unique<model::Eva02Encoder>(top.object("eva02_encoder"), *weights_, "eva02_encoder.",
                                               encoder_weights);
  fusion_ = std::make_unique<model::FeatureFusion>(top.object("feature_fusion"), *weights_);
  prompt_encoder_ = std::make_unique<model::PromptEncoder>(config_, *weights_);
  prompt_adapter_ = std::make_unique<model::PromptAdapter>(config_, *weights_);
  decoder_ = model::GitDecoder::load(top.object("git_decoder"), *weights_, decoder_weights);
  points_ = model::PointHead::load(top.object("point_head"), *weights_);
  const int g = fusion_->output_size();
  n_visual_ = static_cast<int>(prompt_adapter_->tokens_per_prompt(g, g));
  visual_dim_ = prompt_adapter_->token_dim();
}

std::vector<uint8_t> BenchModel::test_image() const {
  const int s = image_size_;
  std::vector<uint8_t> img(size_t(s) * s * 3);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x)
      for (int c = 0; c < 3; ++c) img[(size_t(y) * s + x) * 3 + c] = uint8_t((x * (c + 1) + y * (3 - c) * 7) & 255);
  return img;
}

std::vector<float> BenchModel::encode(const uint8_t* rgb, Timing* t) {
  const int s = image_size_;
  core::ScratchVector<float> sam_in(size_t(s) * s * 3), eva_in(size_t(s) * s * 3);
  core::ScratchVector<float> sam_out(size_t(sam_->output_size())), eva_out(size_t(eva_->output_size()));
  std::vector<float> fused(size_t(fusion_->output_floats()));
  std::lock_guard<std::mutex> lock(compute_);
  auto t0 = Clock::now();
  model::normalize_image(rgb, s, s, s, sam_->config().pixels, sam_in.data(), pool_.get());
  model::normalize_image(rgb, s, s, s, eva_->config().pixels, eva_in.data(), pool_.get());
  auto t1 = Clock::now();
  double sam_ms = 0, eva_ms = 0;  // each branch's own wall time (they overlap when core::run_pair runs them side by side)
  core::run_pair(
      pool_.get(), sam_->matmul_flops(), eva_->matmul_flops(),
      [&] {
        auto ts = Clock::now();
        sam_->forward(sam_in.data(), sam_out.data(), pool_.get());
        sam_ms = ms_since(ts);
      },
      [&] {
        auto te = Clock::now();
        eva_->forward(eva_in.data(), eva_out.data(), pool_.get());
        eva_ms = ms_since(te);
      });
  auto t3 = Clock::now();
  fusion_->forward(eva_out.data(), sam_out.data(), fused.data(), pool_.get());
  if (t) {
    t->normalize = std::chrono::duration<double, std::milli>(t1 - t0).count();
    t->sam = sam_ms;
    t->eva = eva_ms;
    t->fusion = ms_since(t3);
  }
  return fused;
}

std::vector<float> BenchModel::visual_tokens(const float* features) {
  const int g = fusion_->output_size();
  const float box[4] = {0.f, 0.f, float(image_size_), float(image_size_)};
  std::vector<float> out(size_t(n_visual_) * visual_dim_);
  std::lock_guard<std::mutex> lock(compute_);
  prompt_adapter_->visual_tokens(*prompt_encoder_, features, g, g, box, 1, out.data(), pool_.get());
  return out;
}

double BenchModel::step_weight_bytes() const {
  double bytes = 0;
  for (const std::string& name : weights_->names()) {
    const bool decoder = name.rfind("git_decoder.", 0) == 0 && name.rfind("git_decoder.embeddings.", 0) != 0 &&
                         name.rfind("git_decoder.visual_projection.", 0) != 0;
    const core::TensorInfo& t = weights_->info(name);
    // The decoder's matrices are packed in decoder_weights_'s format (bf16: 2 bytes); the rest stays float32.
    const double each = decoder && t.shape.size() == 2 && decoder_weights_ == cpu::WeightFormat::bf16 ? 2.0 : 4.0;
    if (decoder || name.rfind("point_head.", 0) == 0) bytes += each * double(t.numel);
  }
  return bytes;
}

double BenchModel::encoder_flops() const { return sam_->matmul_flops() + eva_->matmul_flops(); }

std::vector<int32_t> BenchModel::caption(const float* visual, int n_tokens, std::vector<double>* step_ms) {
  model::TextDecoderLimits lim;
  lim.max_visual = n_visual_;
  lim.max_context = 0;
  lim.max_text = n_tokens + 1;
  lim.max_sequences = 1;
  auto state = decoder_->new_state(lim);
  const int V = decoder_->vocab_size(), D = decoder_->hidden_size();
  std::vector<float> logits(static_cast<size_t>(V)), hidden(static_cast<size_t>(D)),
      corners(static_cast<size_t>(points_->num_points()) * 2);
  std::vector<float> scratch(points_->scratch_floats(1));
  {
    std::lock_guard<std::mutex> lock(compute_);
    decoder_->prefill(*state, visual, n_visual_, nullptr, 0, 1);
  }
  std::vector<int32_t> out;
  int32_t tok = bos_;
  for (int i = 0; i < n_tokens; ++i) {
    auto t0 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(compute_);
      decoder_->step(*state, &tok, logits.data(), hidden.data());
      points_->predict(hidden.data(), 1, float(image_size_), float(image_size_), corners.data(), nullptr,
                       scratch.data());
    }
    if (tok >= 0 && tok < V) logits[size_t(tok)] = std::min(logits[size_t(tok)], -1e4f);
    logits[size_t(eos_)] = -INFINITY;
    int best = 0;
    for (int v = 1; v < V; ++v)
      if (logits[size_t(v)] > logits[size_t(best)]) best = v;
    tok = best;
    out.push_back(tok);
    if (step_ms) step_ms->push_back(ms_since(t0));
  }
  return out;
}

double BenchModel::caption_rows(const float* visual, int rows, int n_tokens) {
  auto t0 = Clock::now();
  model::TextDecoderLimits lim;
  lim.max_visual = n_visual_;
  lim.max_context = 0;
  lim.max_text = n_tokens + 1;
  lim.max_sequences = rows;
  auto state = decoder_->new_state(lim);
  const int V = decoder_->vocab_size(), D = decoder_->hidden_size();
  std::vector<float> logits(static_cast<size_t>(V) * rows), hidden(static_cast<size_t>(D) * rows);
  std::vector<float> corners(static_cast<size_t>(points_->num_points()) * 2 * rows);
  std::vector<float> scratch(points_->scratch_floats(rows));
  std::lock_guard<std::mutex> lock(compute_);
  decoder_->prefill(*state, visual, n_visual_, nullptr, 0, rows);
  std::vector<int32_t> tok(static_cast<size_t>(rows), bos_);
  for (int i = 0; i < n_tokens; ++i) {
    decoder_->step(*state, tok.data(), logits.data(), hidden.data());
    points_->predict(hidden.data(), rows, float(image_size_), float(image_size_), corners.data(), nullptr,
                     scratch.data());
    for (int r = 0; r < rows; ++r) {
      float* l = logits.data() + static_cast<size_t>(r) * V;
      l[tok[size_t(r)]] = std::min(l[tok[size_t(r)]], -1e4f);
      l[eos_] = -INFINITY;
      int best = 0;
      for (int v = 1; v < V; ++v)
        if (l[v] > l[best]) best = v;
      tok[size_t(r)] = best;
    }
  }
  return ms_since(t0);
}

}  // namespace pixelllm::bench
