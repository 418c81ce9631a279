#include "runtime/cpu/step_batcher.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace pixelllm::runtime::cpu {

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
  cv_.notify_all();
}

void StepBatcher::forget(const model::TextDecoderState* state) {
  std::lock_guard<std::mutex> lock(mu_);
  last_.erase(std::remove(last_.begin(), last_.end(), state), last_.end());
  cv_.notify_all();
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
    for (const Entry* e : queue_) queued = queued || e->job->state == s;
    if (!queued) return false;
  }
  return true;
}

void StepBatcher::run(const Job& job) {
  PIXELLLM_CHECK(job.state != nullptr && job.tokens != nullptr && job.hidden != nullptr, Internal,
                 "step batcher: incomplete job");
  Entry self;
  self.job = &job;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&self);
  cv_.notify_all();  // a leader may be waiting for this state to come back
  while (!self.done) {
    if (busy_) {
      cv_.wait(lock);
      continue;
    }
    // Leader. Let prefills in progress finish and the last batch's other members re-queue first (both bounded;
    // no wait for a lone request).
    const auto prefill_deadline = std::chrono::steady_clock::now() + kPrefillWait;
    while (!busy_ && prefills_ > 0 && std::chrono::steady_clock::now() < prefill_deadline)
      cv_.wait_until(lock, prefill_deadline);
    const auto deadline = last_end_ + kRegroup;
    while (!busy_ && !regrouped() && std::chrono::steady_clock::now() < deadline) cv_.wait_until(lock, deadline);
    if (busy_ || self.done) continue;
    std::vector<Entry*> batch;
    int rows = 0;
    while (!queue_.empty()) {
      Entry* e = queue_.front();
      const int r = e->job->state->num_sequences();
      if (!batch.empty() && rows + r > max_rows_) break;
      batch.push_back(e);
      rows += r;
      queue_.pop_front();
    }
    busy_ = true;
    lock.unlock();
    std::exception_ptr error;
    try {
      execute(batch);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    last_.clear();
    for (Entry* e : batch) {
      e->error = error;
      e->done = true;
      last_.push_back(e->job->state);
    }
    last_end_ = std::chrono::steady_clock::now();
    ++stats_.batches;
    stats_.rows += rows;
    stats_.max_batch_rows = std::max<int64_t>(stats_.max_batch_rows, rows);
    busy_ = false;
    cv_.notify_all();
  }
  if (self.error) std::rethrow_exception(self.error);
}

void StepBatcher::execute(const std::vector<Entry*>& batch) {
  const int V = d_.vocab_size(), D = d_.hidden_size();
  auto points = [&](const Job& j, const float* hidden) {
    if (j.corners != nullptr || j.point_logits != nullptr)
      ph_.predict(hidden, j.state->num_sequences(), j.image_w, j.image_h, j.corners, j.point_logits,
                  j.point_scratch);
  };
  std::lock_guard<std::mutex> compute(compute_);
  if (batch.size() == 1) {  // the unbatched path, unchanged (batch-1 GEMV kernels)
    const Job& j = *batch[0]->job;
    d_.step(*j.state, j.tokens, j.logits, j.hidden);
    points(j, j.hidden);
    return;
  }
  int total = 0;
  bool want_logits = false;
  states_.clear();
  tokens_.clear();
  for (const Entry* e : batch) {
    const Job& j = *e->job;
    const int r = j.state->num_sequences();
    states_.push_back(j.state);
    tokens_.insert(tokens_.end(), j.tokens, j.tokens + r);
    want_logits = want_logits || j.logits != nullptr;
    total += r;
  }
  if (!ws_) ws_ = d_.new_workspace(max_rows_);
  hidden_.resize(static_cast<size_t>(total) * D);
  if (want_logits) logits_.resize(static_cast<size_t>(total) * V);
  d_.step_rows(states_.data(), static_cast<int>(states_.size()), tokens_.data(),
               want_logits ? logits_.data() : nullptr, hidden_.data(), ws_.get());
  size_t row = 0;
  for (const Entry* e : batch) {
    const Job& j = *e->job;
    const size_t r = static_cast<size_t>(j.state->num_sequences());
    std::memcpy(j.hidden, hidden_.data() + row * D, r * D * sizeof(float));
    if (j.logits != nullptr) std::memcpy(j.logits, logits_.data() + row * V, r * V * sizeof(float));
    points(j, j.hidden);
    row += r;
  }
}

}  // namespace pixelllm::runtime::cpu
