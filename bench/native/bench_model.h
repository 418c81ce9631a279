// The CPU runtime's components for the benchmark, loaded from a model directory, with the image side, the prompt
// adapter and a greedy caption loop composed the way the CPU backend composes them (native/runtime/cpu +
// native/pipeline): normalise -> SAM + EVA02 -> fusion; prompt encoder + adapter -> visual tokens; GIT prefill ->
// one decoder step + point head per token. Used only by bench_native.cc (not part of the library).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/eva02_encoder.h"
#include "model/feature_fusion.h"
#include "model/git_decoder.h"
#include "model/point_head.h"
#include "model/prompt_adapter.h"
#include "model/prompt_encoder.h"
#include "model/sam_image_encoder.h"

namespace pixelllm::bench {

struct Timing {  // milliseconds; sam / eva: each branch's own wall time (they overlap when run side by side)
  double sam = 0, eva = 0, fusion = 0, normalize = 0;
};

class BenchModel {
 public:
  // decoder_weights / encoder_weights: cpu::WeightFormat of the text decoder and the image encoders (as the CPU
  // backend's decoderWeights / encoderPrecision options set them).
  BenchModel(const std::string& dir, int threads, cpu::WeightFormat decoder_weights = cpu::WeightFormat::f32,
             cpu::WeightFormat encoder_weights = cpu::WeightFormat::f32);

  int image_size() const { return image_size_; }
  int64_t feature_floats() const { return fusion_->output_floats(); }
  int64_t sam_floats() const { return sam_->output_size(); }
  int n_visual() const { return n_visual_; }
  int visual_dim() const { return visual_dim_; }
  int max_positions() const { return decoder_->config().max_positions; }
  const model::GitDecoder& decoder() const { return *decoder_; }
  core::ThreadPool& pool() { return *pool_; }
  std::mutex& compute() { return compute_; }

  // Synthetic 0..255 canvas (deterministic), the whole canvas valid.
  std::vector<uint8_t> test_image() const;
  // Whole image side; returns the fused features (G, G, C).
  std::vector<float> encode(const uint8_t* rgb, Timing* t = nullptr);
  // Visual tokens (n_visual, visual_dim) for a box prompt over the whole image.
  std::vector<float> visual_tokens(const float* features);
  // Matmul FLOPs (GEMMs + attention products) of one image-side pass.
  double encoder_flops() const;
  // Bytes of float32 weights one decode step must read: every git_decoder and point_head tensor except the
  // embedding tables (one row each) and the visual projection (prefill only).
  double step_weight_bytes() const;

  // One greedy caption of exactly n_tokens generated tokens (eos suppressed so random weights decode to the end;
  // the official repeat cap applies). Each model call holds compute() like the CPU backend. step_ms (optional)
  // receives the time of every step. Returns the tokens.
  std::vector<int32_t> caption(const float* visual, int n_tokens, std::vector<double>* step_ms = nullptr);

  // The cost model of in-flight batching (not a runtime feature yet): `rows` captions advanced together, one
  // decoder step call (one GEMM per weight matrix) for all rows. The rows share one prefix here (the model's
  // multi-sequence state); requests on different images would each attend over their own prefix K/V, which is
  // the same work. Returns the wall time in ms.
  double caption_rows(const float* visual, int rows, int n_tokens);

 private:
  core::Json config_;
  std::shared_ptr<core::SafeTensors> weights_;
  std::shared_ptr<core::ThreadPool> pool_;  // the GEMM pool (cpu::blas_set_threads): kernels and products share it
  std::mutex compute_;
  int image_size_ = 0, n_visual_ = 0, visual_dim_ = 0;
  int32_t bos_ = 0, eos_ = 0;
  std::unique_ptr<model::SamImageEncoder> sam_;
  std::unique_ptr<model::Eva02Encoder> eva_;
  std::unique_ptr<model::FeatureFusion> fusion_;
  std::unique_ptr<model::PromptEncoder> prompt_encoder_;
  std::unique_ptr<model::PromptAdapter> prompt_adapter_;
  cpu::WeightFormat decoder_weights_ = cpu::WeightFormat::f32;
  std::unique_ptr<model::GitDecoder> decoder_;
  std::unique_ptr<model::PointHead> points_;
};

}  // namespace pixelllm::bench
