#include "runtime/cpu/step_batcher.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"
#include "cpu/softmax.h"

namespace pixelllm::runtime::cpu {

namespace {
constexpr float kRepeatLogit = -10000.f;  // official greedy: the previous token's logit is capped at -1e4
}  // namespace

GreedyPick pick_greedy(float* logits, int vocab, int32_t previous, float* logp) {
  if (previous >= 0 && previous < vocab) logits[previous] = std::min(logits[previous], kRepeatLogit);
  pixelllm::cpu::log_softmax(logits, vocab, logp);
  const int best = static_cast<int>(std::max_element(logp, logp + vocab) - logp);
  return {best, logp[best]};
}

StepBatcher::StepBatcher(const model::TextDecoder& decoder, const model::PointHead& points, std::mutex& compute,
                         int max_rows)
    : d_(decoder), ph_(points), compute_(compute), max_rows_(std::max(1, max_rows)) {}

void StepBatcher::begin_prefill() {
  std::lock_guard<std::mutex> lock(mu_);
  ++prefills_;
}

void StepBatcher::end_prefill() {
  std::lock_guard<std::mutex> lock(mu_);
  --prefills_;
  leader_cv_.notify_all();
}

void StepBatcher::forget(const model::TextDecoderState* state) {
  std::lock_guard<std::mutex> lock(mu_);
  last_.erase(std::remove(last_.begin(), last_.end(), state), last_.end());
  leader_cv_.notify_all();
}

StepBatcher::Stats StepBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.queued = static_cast<int64_t>(queue_.size());
  return s;
}

bool StepBatcher::regrouped() const {
  for (const model::TextDecoderState* s : last_) {
    bool queued = false;
    for (const Entry* e : queue_) queued = queued || e->job.state == s;
    if (!queued) return false;
  }
  return true;
}

void StepBatcher::run(const Job& job) {
  PIXELLLM_CHECK(job.state != nullptr && job.tokens != nullptr && job.hidden != nullptr, Internal,
                 "step batcher: incomplete job");
  Entry self;
  self.job = job;
  drive(self);
}

void StepBatcher::run_greedy(const Job& job, const Greedy& greedy) {
  PIXELLLM_CHECK(job.state != nullptr && job.hidden != nullptr && job.logits != nullptr && job.corners != nullptr &&
                     greedy.feed != nullptr && greedy.next != nullptr && greedy.cancel != nullptr &&
                     greedy.step != nullptr && greedy.logp != nullptr && greedy.max_steps >= 1,
                 Internal, "step batcher: incomplete greedy loop");
  Entry self;
  self.job = job;
  self.job.tokens = greedy.feed;
  self.greedy = &greedy;
  if (greedy.max_steps == 1) self.job.logits = nullptr;  // the last step needs the corners only
  drive(self);
}

void StepBatcher::drive(Entry& self) {
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&self);
  leader_cv_.notify_all();  // a leader may be waiting for this state to come back
  while (!self.done) {
    if (leading_) {
      self.cv.wait(lock);
      continue;
    }
    leading_ = true;
    lead(lock, self);
    leading_ = false;
    if (!queue_.empty()) {  // hand the lead to the owner of the next queued entry
      ++stats_.handoffs;
      queue_.front()->cv.notify_one();
    }
  }
  if (self.error) std::rethrow_exception(self.error);
}

// Runs batches until `self` is done. mu_ is held on entry and exit, released while a batch computes.
void StepBatcher::lead(std::unique_lock<std::mutex>& lock, Entry& self) {
  while (!self.done) {
    // Let prefills in progress finish and the last batch's other members re-queue first (both bounded; no wait
    // for a lone request).
    const auto prefill_deadline = std::chrono::steady_clock::now() + kPrefillWait;
    while (prefills_ > 0 && std::chrono::steady_clock::now() < prefill_deadline)
      leader_cv_.wait_until(lock, prefill_deadline);
    const auto deadline = last_end_ + kRegroup;
    while (!regrouped() && std::chrono::steady_clock::now() < deadline) leader_cv_.wait_until(lock, deadline);
    std::vector<Entry*> batch;
    int rows = 0;
    while (!queue_.empty()) {
      Entry* e = queue_.front();
      const int r = e->job.state->num_sequences();
      if (!batch.empty() && rows + r > max_rows_) break;
      batch.push_back(e);
      rows += r;
      queue_.pop_front();
    }
    if (batch.empty()) return;  // cannot happen while self is queued; never spin
    lock.unlock();
    std::exception_ptr error;
    try {
      execute(batch);
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) pick_all(batch);
    for (Entry* e : batch) {
      e->requeue = false;
      if (error)
        e->error = error;
      else if (e->greedy != nullptr)
        advance_greedy(*e);
    }
    lock.lock();
    last_.clear();
    for (Entry* e : batch) {
      // Members that will queue again (Jobs come back from their threads; an ended greedy loop does not).
      if (e->greedy == nullptr || e->requeue) last_.push_back(e->job.state);
      if (e->requeue) {
        queue_.push_back(e);
      } else {
        e->done = true;
        if (e != &self) e->cv.notify_one();
      }
    }
    last_end_ = std::chrono::steady_clock::now();
    ++stats_.batches;
    stats_.rows += rows;
    stats_.max_batch_rows = std::max<int64_t>(stats_.max_batch_rows, rows);
  }
}

// The greedy picks of a batch's loops (pure, each into its own GreedyStep), spread over the pool when the rows'
// logits are large (official vocabulary: a log-softmax over 30522 logits took 0.22 ms per row in one
// measurement, with another job running).
void StepBatcher::pick_all(const std::vector<Entry*>& batch) const {
  const int V = d_.vocab_size();
  auto pick = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const Entry& e = *batch[i];
      if (e.greedy == nullptr) continue;
      const Greedy& g = *e.greedy;
      const Job& j = e.job;
      GreedyStep& out = *g.step;
      if (j.logits == nullptr) {  // the last step: corners only
        std::fill(out.tokens.begin(), out.tokens.end(), g.eos_id);
        std::fill(out.logprobs.begin(), out.logprobs.end(), 0.f);
        continue;
      }
      for (int r = 0; r < j.state->num_sequences(); ++r) {
        const GreedyPick p = pick_greedy(j.logits + static_cast<size_t>(r) * V, V, g.feed[r], g.logp);
        out.tokens[r] = p.token;
        out.logprobs[r] = p.logprob;
      }
    }
  };
  std::shared_ptr<core::ThreadPool> pool = pixelllm::cpu::blas_pool();
  if (pool && pool->size() > 1 && batch.size() > 1 && static_cast<double>(V) * batch.size() >= kSplitPickLogits)
    pool->parallel_for(static_cast<int64_t>(batch.size()), pick);
  else
    pick(0, static_cast<int64_t>(batch.size()));
}

void StepBatcher::advance_greedy(Entry& e) const {
  const Greedy& g = *e.greedy;
  Job& j = e.job;
  const int rows = j.state->num_sequences(), V = d_.vocab_size();
  try {
    ++e.steps;
    if (!(*g.next)(*g.step, g.feed) || e.steps >= g.max_steps) return;
    // The next step's checks, before it joins a batch (a bad request must not fail the others).
    PIXELLLM_CHECK(!g.cancel->load(std::memory_order_relaxed), Aborted, "generation cancelled");
    PIXELLLM_CHECK(j.state->position() < g.max_text, LimitExceeded,
                   "decoder step: text position " + std::to_string(j.state->position()) + " beyond the session's " +
                       std::to_string(g.max_text) + " text positions");
    for (int r = 0; r < rows; ++r)
      PIXELLLM_CHECK(g.feed[r] >= 0 && g.feed[r] < V, InvalidText,
                     "decoder step: token " + std::to_string(g.feed[r]) + " outside the vocabulary [0, " +
                         std::to_string(V) + ")");
    if (e.steps + 1 == g.max_steps) j.logits = nullptr;  // the last step needs the corners only
    e.requeue = true;
  } catch (...) {
    e.error = std::current_exception();
  }
}

void StepBatcher::execute(const std::vector<Entry*>& batch) {
  const int V = d_.vocab_size(), D = d_.hidden_size();
  std::lock_guard<std::mutex> compute(compute_);
  if (batch.size() == 1) {  // the unbatched path, unchanged (batch-1 GEMV kernels)
    const Job& j = batch[0]->job;
    d_.step(*j.state, j.tokens, j.logits, j.hidden);
    if (j.corners != nullptr || j.point_logits != nullptr)
      ph_.predict(j.hidden, j.state->num_sequences(), j.image_w, j.image_h, j.corners, j.point_logits,
                  j.point_scratch);
    return;
  }
  int total = 0;
  bool want_logits = false, want_points = false;
  states_.clear();
  tokens_.clear();
  for (const Entry* e : batch) {
    const Job& j = e->job;
    const int r = j.state->num_sequences();
    states_.push_back(j.state);
    tokens_.insert(tokens_.end(), j.tokens, j.tokens + r);
    want_logits = want_logits || j.logits != nullptr;
    want_points = want_points || j.corners != nullptr || j.point_logits != nullptr;
    total += r;
  }
  if (!ws_) ws_ = d_.new_workspace(max_rows_);
  hidden_.resize(static_cast<size_t>(total) * D);
  if (want_logits) logits_.resize(static_cast<size_t>(total) * V);
  d_.step_rows(states_.data(), static_cast<int>(states_.size()), tokens_.data(),
               want_logits ? logits_.data() : nullptr, hidden_.data(), ws_.get());
  // The point head's MLP once over every row; each job scales its own rows to its image.
  const float* raw = nullptr;
  if (want_points) {
    point_scratch_.resize(ph_.scratch_floats(total));
    raw = ph_.mlp(hidden_.data(), total, point_scratch_.data());
  }
  size_t row = 0;
  for (const Entry* e : batch) {
    const Job& j = e->job;
    const size_t r = static_cast<size_t>(j.state->num_sequences());
    std::memcpy(j.hidden, hidden_.data() + row * D, r * D * sizeof(float));
    if (j.logits != nullptr) std::memcpy(j.logits, logits_.data() + row * V, r * V * sizeof(float));
    if (j.corners != nullptr || j.point_logits != nullptr)
      ph_.to_corners(raw + row * ph_.mlp_outputs(), static_cast<int>(r), j.image_w, j.image_h, j.corners,
                     j.point_logits);
    row += r;
  }
}

}  // namespace pixelllm::runtime::cpu
