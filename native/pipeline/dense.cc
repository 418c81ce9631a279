#include "pipeline/dense.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <exception>
#include <string>
#include <thread>

#include "core/error.h"
#include "pipeline/decoding.h"

namespace pixelllm::pipeline {

using core::ErrorCode;

DenseModel DenseModel::from_config(const core::Json& config) {
  core::JsonReader top(config, "config.json");
  DenseModel d;
  if (!top.has("proposal_head")) return d;
  const core::JsonReader r = top.object("proposal_head");
  d.present = true;
  d.grid = static_cast<int>(r.get_int("grid_size", 1, 1024));
  d.params.stride = static_cast<int>(r.get_int("stride", 1, 8192));
  d.params.pre_nms_topk = static_cast<int>(r.get_int("pre_nms_topk", 1, 1 << 20, 100));
  d.params.score_threshold = static_cast<float>(r.get_number("score_threshold", 0, 1, 0.05));
  d.params.iou_threshold = static_cast<float>(r.get_number("iou_threshold", 0, 1, 0.5));
  d.params.max_detections = static_cast<int>(r.get_int("max_detections", 1, 1 << 20, 16));
  return d;
}

std::vector<DenseItem> run_dense(const TaskModel& m, const DenseModel& d, const ImageFeatures& f,
                                 const DenseOptions& o, const std::atomic<bool>& cancel) {
  auto check_cancel = [&] { PIXELLLM_CHECK(!cancel.load(std::memory_order_relaxed), Aborted, "cancelled"); };
  PIXELLLM_CHECK(d.present && m.backend->proposal_head != nullptr, BackendUnavailable,
                 std::string("dense captioning needs a proposal head: ") +
                     (d.present ? "the '" + m.backend->name + "' backend has none for this model"
                                : "this model has none (no proposal_head in config.json)"));
  PIXELLLM_CHECK(d.grid == m.feature_grid, ConfigMismatch,
                 "proposal_head.grid_size " + std::to_string(d.grid) + " != feature grid " +
                     std::to_string(m.feature_grid));
  PIXELLLM_CHECK(o.max_boxes >= 0, InvalidArgument, "max_boxes must be >= 0");
  PIXELLLM_CHECK(o.score_threshold <= 1.f && o.nms_iou <= 1.f && !std::isnan(o.score_threshold) &&
                     !std::isnan(o.nms_iou),
                 InvalidArgument, "score_threshold and nms_iou must be within 0..1");
  PIXELLLM_CHECK(o.max_tokens >= 0, InvalidArgument, "max_tokens must be >= 0");
  PIXELLLM_CHECK(o.max_tokens <= m.max_caption_length, LimitExceeded,
                 "max_tokens " + std::to_string(o.max_tokens) + " is more than the model's max_caption_length " +
                     std::to_string(m.max_caption_length));
  PIXELLLM_CHECK(static_cast<int>(o.context_tokens.size()) <= m.max_caption_length, LimitExceeded,
                 "the context has " + std::to_string(o.context_tokens.size()) + " tokens, the model takes at most " +
                     std::to_string(m.max_caption_length));
  for (int32_t t : o.context_tokens)
    PIXELLLM_CHECK(t >= 0 && t < m.vocab_size, InvalidText,
                   "context: token id " + std::to_string(t) + " outside the vocabulary");

  ProposalParams p = d.params;
  if (o.max_boxes > 0) p.max_detections = o.max_boxes;
  if (o.score_threshold >= 0) p.score_threshold = o.score_threshold;
  if (o.nms_iou >= 0) p.iou_threshold = o.nms_iou;

  const ImageGeometry& g = f.geometry;
  const int G = m.feature_grid;
  std::vector<float> heatmap(static_cast<size_t>(G) * G), regs(static_cast<size_t>(G) * G * 4);
  check_cancel();
  m.backend->proposal_head->proposals(f.features.data(), 1, heatmap.data(), regs.data());
  const std::vector<Proposal> props = decode_proposals(heatmap.data(), regs.data(), G, G,
                                                       static_cast<float>(g.valid_h), static_cast<float>(g.valid_w), p);
  std::vector<DenseItem> items;
  if (props.empty()) return items;

  // Visual tokens of every box in one call (prompts are independent), then one greedy caption per box.
  const int k = static_cast<int>(props.size());
  const size_t per = static_cast<size_t>(m.visual_tokens) * m.visual_dim;
  std::vector<float> boxes(static_cast<size_t>(k) * 4), visual(per * k);
  for (int i = 0; i < k; ++i) {
    const Box& b = props[i].box;
    boxes[4 * i] = b.x0;
    boxes[4 * i + 1] = b.y0;
    boxes[4 * i + 2] = b.x1;
    boxes[4 * i + 3] = b.y1;
  }
  check_cancel();
  m.backend->prompt_adapter->visual_tokens(f.features.data(), 1, boxes.data(), k, visual.data());

  DecodeInput in;
  in.n_visual = m.visual_tokens;
  in.visual_dim = m.visual_dim;
  if (!o.context_tokens.empty()) {
    in.context = o.context_tokens.data();
    in.n_context = static_cast<int>(o.context_tokens.size());
  }
  DecodeOptions dopt;
  dopt.max_length = o.max_tokens == 0 ? m.max_caption_length : std::min(o.max_tokens + 2, m.max_caption_length);
  dopt.bos_id = m.bos;
  dopt.eos_id = m.eos;
  dopt.image_width = static_cast<float>(g.valid_w);
  dopt.image_height = static_cast<float>(g.valid_h);
  dopt.vocab_size = m.vocab_size;
  dopt.num_points = m.num_points;
  in.visual = visual.data();
  // The boxes' captions run side by side on up to kDenseCaptionThreads threads (this one included), each with its
  // own session taking the next box: on the CPU backend their decode steps share batches (runtime/cpu/
  // step_batcher.h), so every weight is read once per step for all of them instead of once per box. The first
  // failure stops the others before their next box and is rethrown (ABORTED when `cancel` was set).
  std::vector<float> rank(k);
  items.resize(k);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  const int workers = std::min(k, kDenseCaptionThreads);
  std::vector<std::exception_ptr> errors(workers);
  auto work = [&](int w) {
    try {
      auto session = m.backend->text_decoder->new_session(decode_limits(in, dopt));
      DecodeInput mine = in;
      for (int i = next++; i < k && !failed.load(); i = next++) {
        check_cancel();
        mine.visual = visual.data() + per * i;
        DecodeResult r = greedy_decode(*session, mine, dopt, nullptr, cancel);
        items[i].box = g.to_orig(props[i].box);
        items[i].score = props[i].score;
        items[i].tokens = std::move(r.tokens);
        items[i].caption_score = r.score;
        rank[i] = std::sqrt(std::max(props[i].score, 0.f) * std::exp(r.score));
      }
    } catch (...) {
      errors[w] = std::current_exception();
      failed = true;
    }
  };
  {
    std::vector<std::thread> threads;
    try {
      for (int w = 1; w < workers; ++w) threads.emplace_back(work, w);
    } catch (...) {  // no thread: the boxes left go to the threads that started
    }
    work(0);
    for (std::thread& t : threads) t.join();
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return rank[a] > rank[b]; });
  std::vector<DenseItem> sorted;
  sorted.reserve(k);
  for (int i : order) sorted.push_back(std::move(items[i]));
  return sorted;
}

}  // namespace pixelllm::pipeline
