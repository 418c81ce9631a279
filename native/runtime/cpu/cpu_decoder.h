// The CPU text decoder backend: runtime::TextDecoderBackend / DecoderSession (runtime/backend.h) over
// model::TextDecoder (git_decoder | t5, native/model/text_decoder.h) with the fused model::PointHead.
//
// A session owns one model::TextDecoderState (KV caches + scratch, allocated once at new_session) and its own
// output buffers, so a decode loop allocates nothing per token. Rows share the prefix (visual tokens, context,
// image size): the CPU decoder encodes it once from row 0 and runs `rows` text sequences over it. A context of
// exactly one 0 token means "no context" (the interface rule) and is passed to the model as none.
// Every model call holds `compute` (the backend's compute lock: concurrent requests interleave per step, never
// inside a component; see core/thread_pool.h for why compute is serialised). Steps go through the backend's
// StepBatcher (runtime/cpu/step_batcher.h): the steps of concurrent sessions that are ready together run as one
// multi-row decoder step; a lone session steps exactly as without it.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "model/point_head.h"
#include "model/text_decoder.h"
#include "runtime/backend.h"
#include "runtime/cpu/step_batcher.h"

namespace pixelllm::runtime::cpu {

// One request's session: allocates its model state (KV caches, scratch) and output buffers from `limits`, once.
class CpuDecoderSession final : public DecoderSession {
 public:
  CpuDecoderSession(const model::TextDecoder& decoder, const model::PointHead& points, int n_visual,
                    std::mutex& compute, std::shared_ptr<StepBatcher> batcher, const DecoderLimits& limits);
  ~CpuDecoderSession() override;

  void prefill(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text, int n_text,
               const float* image_hw, const DecoderOutputs& out) override;
  void step(const int32_t* tokens, const DecoderOutputs& out) override;
  void reorder(const int32_t* parents) override;
  int position() const override { return state_->position(); }
  int rows() const override { return rows_; }
  // The default's rules with the session's buffers and the reference decode's log-softmax.
  GreedyStep step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) override;
  // The whole loop through the batcher (StepBatcher::run_greedy): concurrent greedy loops are advanced by the
  // batch's leader, with no thread hand-off per token.
  void run_greedy(int32_t* feed, int max_steps, int32_t eos_id, const GreedyNext& next,
                  const std::atomic<bool>& cancel) override;
  // Row 0's hidden state of every position fed is kept (max_text x D floats), so the mask path's full pass only
  // runs the positions after them (model::TextDecoder::step_block).
  bool continue_text_states(const int32_t* text, int n_text, float* hidden) override;

 protected:
  int vocab_size() const override { return d_.vocab_size(); }
  int corner_values() const override { return ph_.num_points() * 2; }

 private:
  // Row 0 was fed `token` and gave `hidden` (D floats) at the next history position.
  void record(int32_t token, const float* hidden);
  // This request's checks of a step, before it joins a batch (a bad request must not fail the others).
  void check_step(const int32_t* tokens) const;
  // Feeds tokens (rows) at the current position through the batcher; outputs as DecoderOutputs (one step).
  // (A teacher-forced prefill of several tokens runs TextDecoder::step_block instead of one step per slot.)
  void run_step(const int32_t* tokens, const DecoderOutputs& out);

  const model::TextDecoder& d_;
  const model::PointHead& ph_;
  int n_visual_;
  std::mutex& compute_;
  std::shared_ptr<StepBatcher> batcher_;
  DecoderLimits lim_;
  std::unique_ptr<model::TextDecoderState> state_;
  int rows_ = 0;
  float image_h_ = 0, image_w_ = 0;
  std::vector<float> logits_, logp_, hidden_, corners_, scratch_;
  std::vector<int32_t> fed_;    // row 0's tokens since the prefill
  std::vector<float> history_;  // their hidden states (max_text, D)
  bool history_valid_ = false;  // false after a reorder (row 0 may be another sequence's copy)
};

class CpuTextDecoder final : public TextDecoderBackend {
 public:
  // n_visual: visual tokens per prompt (the prompt adapter's tokens_per_prompt). The decoder, the head and the
  // mutex must outlive this object and its sessions.
  CpuTextDecoder(const model::TextDecoder& decoder, const model::PointHead& points, int n_visual,
                 std::mutex& compute);

  std::unique_ptr<DecoderSession> new_session(const DecoderLimits& limits) const override;
  // The batcher every session of this decoder steps through (statistics for tests and benchmarks).
  const StepBatcher& batcher() const noexcept { return *batcher_; }
  // model::TextDecoder::forward (the official masks on every row, T5 included) + the point head, per row.
  void forward(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text,
               int n_text, const float* image_hw, const DecoderOutputs& out) const override;

 private:
  const model::TextDecoder& decoder_;
  const model::PointHead& points_;
  int n_visual_;
  std::mutex& compute_;
  std::shared_ptr<StepBatcher> batcher_;
};

}  // namespace pixelllm::runtime::cpu
