// In-flight batching of decode steps (CPU backend): the steps of concurrent requests that are ready at the same
// time run as ONE multi-row decoder step (model::TextDecoder::step_rows: one GEMM per projection per layer and one
// vocabulary GEMM over all rows, attention per row over its own KV cache), so every weight is streamed once per
// batch instead of once per request. A decode step of the official GIT decoder at batch 1 is memory-bound GEMV;
// 8 rows cost little more than 1.
//
// Two kinds of work join a batch:
//  - a Job (run): one step of one session; its thread sleeps until the step's outputs are written, then does its
//    own post-processing (beam search, teacher forcing, single steps) and queues its next step;
//  - a greedy loop (run_greedy, DecoderSession::run_greedy): the batch's leader itself picks each row's next token
//    (official greedy rules, pick_greedy), calls the request's `next` callback (which records the word and streams
//    it) and re-queues the step at once, until the callback stops it, its steps run out, it is cancelled or
//    something throws. The owner thread sleeps through the whole loop: no thread hand-off per token. Before,
//    every batch woke all its members' threads to pick their tokens and queue again: 8 concurrent 40-token
//    captions of the demo model (random weights, 2 cores, through the pipeline, no JS) took 69-85 ms, and
//    43-50 ms with the leader advancing the loops (alternated runs; bench/README.md, session 7).
// Combining leader, no timer: the first caller to find no leader becomes the leader and runs batches (everything
// queued, up to max_rows rows; a job is never split) under the backend's compute lock until its own work is done,
// then hands the lead to the owner of the first queued entry (one wake-up). Every waiting thread sleeps on its
// own condition variable and is woken only for its result or for the lead. A lone request never waits: with
// nothing else decoding it runs at once, through the same single-state path as before (TextDecoder::step, the
// batch-1 GEMV kernels), so its results are the unbatched ones bit for bit. Only when the previous batch had other
// members still decoding does a leader wait for them to come back (Jobs re-queue from their own threads), at
// most kRegroup; this keeps the requests in one batch instead of letting them drift into alternating groups.
// Prefills go first: while another session is encoding its prefix (begin_prefill .. end_prefill, it waits for
// the compute lock too), a leader holds its batch back (at most kPrefillWait) so that the newcomer steps in the
// same batches from its first token on, instead of one batch behind forever and leaving a tail of small batches
// at the end. A lone request never waits (no other prefill).
// Each job keeps its own state (KV caches, position), point-head image size and output buffers; an exception in
// a batch is rethrown to every member of that batch, an exception in one greedy loop's callback or checks ends
// that loop alone. Per-request checks (positions, token ids) belong to the caller before run() and to the leader
// before it re-queues a greedy loop, so one request's bad input cannot fail the others.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "model/point_head.h"
#include "model/text_decoder.h"
#include "runtime/backend.h"

namespace pixelllm::runtime::cpu {

// Official greedy pick on one row of logits (modified in place): the previous token's logit is capped at -1e4,
// then the most likely token and its log-probability (log-softmax over the row; `logp` holds V floats).
struct GreedyPick {
  int32_t token = 0;
  float logprob = 0;
};
GreedyPick pick_greedy(float* logits, int vocab, int32_t previous, float* logp);

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

  // A greedy loop (DecoderSession::run_greedy): `job` feeds `feed` (rows tokens, rewritten by `next`) and needs
  // logits (rows, V) and corners; `step` is the GreedyStep handed to `next` (rows tokens / logprobs / corners,
  // sized by the caller; job.corners = step.corners.data()); logp holds V floats. The last of max_steps steps
  // computes no logits (its step.tokens are eos, logprobs 0). max_text: the state's position limit.
  struct Greedy {
    int32_t* feed = nullptr;
    int max_steps = 0;
    int max_text = 0;
    int32_t eos_id = 0;
    const DecoderSession::GreedyNext* next = nullptr;
    const std::atomic<bool>* cancel = nullptr;
    GreedyStep* step = nullptr;
    float* logp = nullptr;
  };

  // The decoder, head and mutex must outlive the batcher. max_rows: rows of one batch (>= 1).
  StepBatcher(const model::TextDecoder& decoder, const model::PointHead& points, std::mutex& compute,
              int max_rows = 32);

  // Runs the job's step (alone or in a batch) and returns when its outputs are written; rethrows the batch's
  // exception. Thread-safe; one job per state at a time.
  void run(const Job& job);
  // Runs the greedy loop to its end (see Greedy); rethrows what ended it (ABORTED when cancelled, the callback's
  // exception, a batch's). The callback runs on whichever thread leads (never two of one loop at once).
  void run_greedy(const Job& job, const Greedy& greedy);
  // A session is encoding its prefix (TextDecoder::prefill): leaders wait for it (see above).
  void begin_prefill();
  void end_prefill();
  // A state that stops decoding (its session is destroyed): leaders stop waiting for it.
  void forget(const model::TextDecoderState* state);

  // Statistics for tests and benchmarks: batches run, rows stepped, the largest batch, jobs queued now, leader
  // hand-offs (a leader's own work ended with others queued).
  struct Stats {
    int64_t batches = 0, rows = 0, max_batch_rows = 0, queued = 0, handoffs = 0;
  };
  Stats stats() const;

  static constexpr std::chrono::microseconds kRegroup{2000};
  static constexpr std::chrono::milliseconds kPrefillWait{500};

 private:
  struct Entry {
    Job job;
    const Greedy* greedy = nullptr;
    int steps = 0;  // greedy: steps run
    bool done = false;
    bool requeue = false;  // greedy: go on after this batch (leader-only, set between execute and the re-queue)
    std::exception_ptr error;
    std::condition_variable cv;  // the owner sleeps here: woken when done or handed the lead
  };
  void drive(Entry& self);
  void lead(std::unique_lock<std::mutex>& lock, Entry& self);
  bool regrouped() const;  // every still-decoding member of the last batch is queued again (mu_ held)
  void execute(const std::vector<Entry*>& batch);
  void pick_all(const std::vector<Entry*>& batch) const;  // leader, after the batch: the greedy loops' picks
  void advance_greedy(Entry& e) const;  // leader, after the picks: callback, checks; sets e.requeue / error
  static constexpr double kSplitPickLogits = 65536;  // picks over the pool from this many logits in a batch

  const model::TextDecoder& d_;
  const model::PointHead& ph_;
  std::mutex& compute_;
  const int max_rows_;

  mutable std::mutex mu_;
  std::condition_variable leader_cv_;  // the leader waits here for prefills and regrouping members
  std::deque<Entry*> queue_;
  bool leading_ = false;  // a thread is leading (waiting to regroup or running a batch)
  int prefills_ = 0;      // sessions between begin_prefill and end_prefill
  std::vector<const model::TextDecoderState*> last_;  // members of the last batch that will queue again
  std::chrono::steady_clock::time_point last_end_{};
  Stats stats_;

  // Leader-only buffers (used by one batch at a time, under the lead).
  std::unique_ptr<model::TextDecoderWorkspace> ws_;
  std::vector<model::TextDecoderState*> states_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_, hidden_, point_scratch_;
};

}  // namespace pixelllm::runtime::cpu
