// In-flight batching of decode steps (CPU backend): the steps of concurrent requests that are ready at the same
// time run as ONE multi-row decoder step (model::TextDecoder::step_rows: one GEMM per projection per layer and one
// vocabulary GEMM over all rows, attention per row over its own KV cache), so every weight is streamed once per
// batch instead of once per request. A decode step of the official GIT decoder at batch 1 is memory-bound GEMV;
// 8 rows cost little more than 1.
//
// Combining leader, no timer: a session calls run(job), which queues the job; the first caller to find the
// batcher idle becomes the leader, takes everything queued (whole jobs, up to max_rows rows; a job is never
// split), runs it under the backend's compute lock, scatters the outputs and wakes the others. While one batch
// runs the next one queues up. A lone request never waits: with nothing else decoding it runs at once, through
// the same single-state path as before (TextDecoder::step, the batch-1 GEMV kernels), so its results are the
// unbatched ones bit for bit. Only when the previous batch had other members still decoding does a leader wait
// for them to come back (they re-queue within their per-token post-processing), at most kRegroup; this keeps the
// requests in one batch instead of letting them drift into alternating groups.
// Prefills go first: while another session is encoding its prefix (begin_prefill .. end_prefill, it waits for
// the compute lock too), a leader holds its batch back (at most kPrefillWait) so that the newcomer steps in the
// same batches from its first token on, instead of one batch behind forever and leaving a tail of small batches
// at the end. A lone request never waits (no other prefill).
// Each job keeps its own state (KV caches, position), point-head image size and output buffers; an exception in
// a batch is rethrown to every member of that batch. Per-request checks (positions, token ids) belong to the
// caller, before run(), so one request's bad input cannot fail the others.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "model/point_head.h"
#include "model/text_decoder.h"

namespace pixelllm::runtime::cpu {

class StepBatcher {
 public:
  // One request's step: rows = state->num_sequences(). hidden is required (rows, D: the point head reads it);
  // logits (rows, V), corners (rows, K, 2), point_logits (rows, K, C+1) may be null. point_scratch holds
  // PointHead::scratch_floats(rows) when corners or point_logits are wanted.
  struct Job {
    model::TextDecoderState* state = nullptr;
    const int32_t* tokens = nullptr;
    float* logits = nullptr;
    float* hidden = nullptr;
    float* corners = nullptr;
    float* point_logits = nullptr;
    float* point_scratch = nullptr;
    float image_w = 0, image_h = 0;
  };

  // The decoder, head and mutex must outlive the batcher. max_rows: rows of one batch (>= 1).
  StepBatcher(const model::TextDecoder& decoder, const model::PointHead& points, std::mutex& compute,
              int max_rows = 32);

  // Runs the job's step (alone or in a batch) and returns when its outputs are written; rethrows the batch's
  // exception. Thread-safe; one job per state at a time.
  void run(const Job& job);
  // A session is encoding its prefix (TextDecoder::prefill): leaders wait for it (see above).
  void begin_prefill();
  void end_prefill();
  // A state that stops decoding (its session is destroyed): leaders stop waiting for it.
  void forget(const model::TextDecoderState* state);

  // Statistics for tests and benchmarks: batches run, rows stepped, the largest batch, jobs queued now.
  struct Stats {
    int64_t batches = 0, rows = 0, max_batch_rows = 0, queued = 0;
  };
  Stats stats() const;

  static constexpr std::chrono::microseconds kRegroup{2000};
  static constexpr std::chrono::milliseconds kPrefillWait{500};

 private:
  struct Entry {
    const Job* job = nullptr;
    bool done = false;
    std::exception_ptr error;
  };
  bool regrouped() const;  // every still-decoding member of the last batch is queued again (mu_ held)
  void execute(const std::vector<Entry*>& batch);

  const model::TextDecoder& d_;
  const model::PointHead& ph_;
  std::mutex& compute_;
  const int max_rows_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry*> queue_;
  bool busy_ = false;
  int prefills_ = 0;  // sessions between begin_prefill and end_prefill
  std::vector<const model::TextDecoderState*> last_;  // members of the last batch
  std::chrono::steady_clock::time_point last_end_{};
  Stats stats_;

  // Leader-only buffers (used by one batch at a time, under busy_).
  std::unique_ptr<model::TextDecoderWorkspace> ws_;
  std::vector<model::TextDecoderState*> states_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_, hidden_;
};

}  // namespace pixelllm::runtime::cpu
