// DecoderSession on TensorRT: decoder_prefill once, then decoder_step per token over a DEVICE-RESIDENT KV cache.
//
// Cache: per layer K and V (max_rows, heads, capacity, head_dim) and the key bias (max_rows, capacity), allocated
// once per session. The step graph reads the whole capacity (fixed shapes: every step has the same shapes and
// addresses), its own K/V row is appended by kv_append at base + position, where position lives in device memory
// and is advanced by a kernel; so the step sequence [bias update, enqueueV3, kv_append, bias/position advance,
// greedy pick, copies of the few results into pinned memory] is captured ONCE as a CUDA graph and replayed each
// step (fallback: the same launches without a graph when capture fails). GIT: base = T + context length (the
// prefix entries come from the prefill); T5: base = 0 and the cross-attention K/V stay where the prefill wrote them.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "runtime/tensorrt/kernels.h"
#include "runtime/tensorrt/logger.h"
#include "runtime/tensorrt/trt_model.h"

namespace pixelllm::runtime::trt {
namespace {

using core::ErrorCode;

class TrtDecoderSession final : public DecoderSession {
 public:
  TrtDecoderSession(std::shared_ptr<TrtModel> model, const DecoderLimits& limits);
  void prefill(const float* visual, int rows, const int32_t* context, int n_context, const int32_t* text, int n_text,
               const float* image_hw, const DecoderOutputs& out) override;
  void step(const int32_t* tokens, const DecoderOutputs& out) override;
  GreedyStep step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) override;
  void reorder(const int32_t* parents) override;
  int position() const override { return position_; }
  int rows() const override { return rows_; }

 protected:
  int vocab_size() const override { return vocab_; }
  int corner_values() const override { return corners_; }

 private:
  std::string kv(const char* prefix, const char* kind, int layer) const {
    return std::string(prefix) + "_" + kind + "." + std::to_string(layer);
  }
  void bind_step();
  void step_body(bool greedy);
  void download(const DecoderOutputs& out, int n);   // step outputs (n = 1) into `out`
  void check_tokens(const int32_t* tokens, int n) const;

  std::shared_ptr<TrtModel> model_;
  DecoderLimits limits_;
  std::shared_ptr<Engine> prefill_engine_, step_engine_;
  Stream stream_;
  ExecutionContext prefill_ctx_, step_ctx_;
  CudaGraph graph_;
  bool graph_failed_ = false, step_ran_ = false;
  std::string graph_reason_;

  bool t5_ = false;
  int layers_ = 0, heads_ = 0, head_dim_ = 0, vocab_ = 0, hidden_ = 0, corners_ = 0, point_logits_ = 0;
  int visual_ = 0, visual_dim_ = 0, capacity_ = 0;
  int rows_ = 0, position_ = 0, base_ = 0, encoder_len_ = 0;
  int32_t eos_ = 0;

  std::vector<DeviceBuffer> cache_;        // 2 * layers: K0, V0, K1, ...
  std::vector<DeviceBuffer> cross_;        // T5: 2 * layers
  std::vector<DeviceBuffer> fresh_;        // step outputs present_key/value.i (rows, H, 1, Dh)
  DeviceBuffer bias_, enc_bias_, scratch_, ptr_src_, ptr_dst_;
  DeviceBuffer tokens_, position_dev_, position_rows_, image_hw_, finished_, logprob_, parents_;
  DeviceBuffer logits_, hidden_dev_, corners_dev_, point_logits_dev_;
  PinnedBuffer host_in_, host_out_;
  std::map<std::string, DeviceBuffer> prefill_out_;
};

TrtDecoderSession::TrtDecoderSession(std::shared_ptr<TrtModel> model, const DecoderLimits& limits)
    : model_(std::move(model)),
      limits_(limits),
      prefill_engine_(model_->engine("decoder_prefill")),
      step_engine_(model_->engine("decoder_step")),
      prefill_ctx_(prefill_engine_),
      step_ctx_(step_engine_) {
  const DecoderLimits& built = model_->options().decoder;
  if (limits.max_rows > built.max_rows || limits.max_context > built.max_context || limits.max_text > built.max_text)
    core::fail(ErrorCode::LimitExceeded, "tensorrt: session limits exceed the engines' profiles (rows " +
                                             std::to_string(built.max_rows) + ", context " +
                                             std::to_string(built.max_context) + ", text " +
                                             std::to_string(built.max_text) + ")");
  t5_ = model_->t5();
  eos_ = model_->eos_id();
  while (step_engine_->has_tensor(kv("past", "key", layers_))) ++layers_;
  const TensorInfo& past = step_engine_->tensor(kv("past", "key", 0));
  heads_ = static_cast<int>(past.dims[1]);
  head_dim_ = static_cast<int>(past.dims[3]);
  vocab_ = static_cast<int>(step_engine_->tensor("logits").dims[1]);
  hidden_ = static_cast<int>(step_engine_->tensor("hidden").dims[1]);
  const auto& cd = step_engine_->tensor("corners").dims;
  corners_ = static_cast<int>(cd[1] * cd[2]);
  const auto& pd = step_engine_->tensor("point_logits").dims;
  point_logits_ = static_cast<int>(pd[1] * pd[2]);
  const auto& vd = prefill_engine_->tensor("visual_tokens").dims;
  visual_ = static_cast<int>(vd[1]);
  visual_dim_ = static_cast<int>(vd[2]);
  capacity_ = model_->cache_capacity();

  const size_t R = static_cast<size_t>(limits_.max_rows);
  const size_t row_cache = static_cast<size_t>(heads_) * capacity_ * head_dim_;
  const size_t enc_max = static_cast<size_t>(visual_ + built.max_context);
  std::vector<float*> src, dst;
  for (int i = 0; i < 2 * layers_; ++i) {
    cache_.emplace_back(R * row_cache * sizeof(float));
    fresh_.emplace_back(R * heads_ * head_dim_ * sizeof(float));
    if (t5_) cross_.emplace_back(R * heads_ * enc_max * head_dim_ * sizeof(float));
    src.push_back(fresh_.back().as<float>());
    dst.push_back(cache_.back().as<float>());
  }
  bias_.resize(R * capacity_ * sizeof(float));
  enc_bias_.resize(R * enc_max * sizeof(float));
  scratch_.resize(R * std::max(row_cache, static_cast<size_t>(heads_) * enc_max * head_dim_) * sizeof(float));
  tokens_.resize(R * sizeof(int64_t));
  position_dev_.resize(sizeof(int64_t));
  position_rows_.resize(R * sizeof(int64_t));
  image_hw_.resize(R * 2 * sizeof(float));
  finished_.resize(R);
  logprob_.resize(R * sizeof(float));
  parents_.resize(R * sizeof(int32_t));
  logits_.resize(R * vocab_ * sizeof(float));
  hidden_dev_.resize(R * hidden_ * sizeof(float));
  corners_dev_.resize(R * corners_ * sizeof(float));
  point_logits_dev_.resize(R * point_logits_ * sizeof(float));
  ptr_src_.resize(src.size() * sizeof(float*));
  ptr_dst_.resize(dst.size() * sizeof(float*));
  cuda_check(cudaMemcpy(ptr_src_.get(), src.data(), src.size() * sizeof(float*), cudaMemcpyHostToDevice), "kv ptrs");
  cuda_check(cudaMemcpy(ptr_dst_.get(), dst.data(), dst.size() * sizeof(float*), cudaMemcpyHostToDevice), "kv ptrs");
  host_out_.resize(R * (sizeof(int64_t) + sizeof(float) + corners_ * sizeof(float)) + 64);
}

void TrtDecoderSession::check_tokens(const int32_t* tokens, int n) const {
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      core::fail(ErrorCode::InvalidText, "token id " + std::to_string(tokens[i]) + " outside the vocabulary");
}

void TrtDecoderSession::prefill(const float* visual, int rows, const int32_t* context, int n_context,
                                const int32_t* text, int n_text, const float* image_hw, const DecoderOutputs& out) {
  if (rows < 1 || rows > limits_.max_rows) core::fail(ErrorCode::LimitExceeded, "tensorrt: rows outside 1..max_rows");
  const int32_t no_context[1] = {0};
  if (n_context == 0 || context == nullptr) {   // "no context" == one padding token (exact, see export_onnx.py)
    context = no_context;
    n_context = 1;
  }
  if (n_context > limits_.max_context) core::fail(ErrorCode::LimitExceeded, "tensorrt: context longer than max_context");
  if (n_text < 1 || n_text > limits_.max_text) core::fail(ErrorCode::LimitExceeded, "tensorrt: text outside 1..max_text");
  check_tokens(context, rows * (context == no_context ? 0 : n_context));
  check_tokens(text, rows * n_text);
  rows_ = rows;
  position_ = n_text;
  base_ = t5_ ? 0 : visual_ + n_context;
  encoder_len_ = visual_ + n_context;
  graph_.reset();
  step_ran_ = false;
  cudaStream_t s = stream_.get();

  // inputs through pinned staging (context padding rows repeated per row when the caller gave one row)
  const size_t vis_b = static_cast<size_t>(rows) * visual_ * visual_dim_ * sizeof(float);
  const size_t ctx_n = static_cast<size_t>(rows) * n_context, txt_n = static_cast<size_t>(rows) * n_text;
  host_in_.resize(vis_b + (ctx_n + txt_n) * sizeof(int64_t) + rows * 2 * sizeof(float) +
                  static_cast<size_t>(rows) * capacity_ * sizeof(float));
  char* h = host_in_.as<char>();
  std::memcpy(h, visual, vis_b);
  int64_t* hctx = reinterpret_cast<int64_t*>(h + vis_b);
  for (size_t i = 0; i < ctx_n; ++i) hctx[i] = context == no_context ? 0 : context[i];
  int64_t* htxt = hctx + ctx_n;
  for (size_t i = 0; i < txt_n; ++i) htxt[i] = text[i];
  float* hhw = reinterpret_cast<float*>(htxt + txt_n);
  std::memcpy(hhw, image_hw, rows * 2 * sizeof(float));
  float* hbias = hhw + rows * 2;
  const float masked = t5_ ? -1e10f : -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < static_cast<size_t>(rows) * capacity_; ++i) hbias[i] = masked;

  auto& din = prefill_out_;
  auto upload = [&](const std::string& name, const void* src, size_t bytes, const std::vector<int64_t>& dims) {
    DeviceBuffer& d = din[name];
    d.resize(bytes);
    cuda_check(cudaMemcpyAsync(d.get(), src, bytes, cudaMemcpyHostToDevice, s), "prefill upload");
    prefill_ctx_.set_input_shape(name, dims);
    prefill_ctx_.set_address(name, d.get());
  };
  upload("visual_tokens", h, vis_b, {rows, visual_, visual_dim_});
  upload("context_tokens", hctx, ctx_n * sizeof(int64_t), {rows, n_context});
  upload("text_tokens", htxt, txt_n * sizeof(int64_t), {rows, n_text});
  cuda_check(cudaMemcpyAsync(image_hw_.get(), hhw, rows * 2 * sizeof(float), cudaMemcpyHostToDevice, s), "image_hw");
  prefill_ctx_.set_input_shape("image_hw", {rows, 2});
  prefill_ctx_.set_address("image_hw", image_hw_.get());
  cuda_check(cudaMemcpyAsync(bias_.get(), hbias, static_cast<size_t>(rows) * capacity_ * sizeof(float),
                             cudaMemcpyHostToDevice, s), "bias init");
  for (const TensorInfo& t : prefill_engine_->tensors()) {
    if (t.input) continue;
    void* addr = nullptr;
    if (t5_ && t.name == "encoder_key_bias") addr = enc_bias_.get();
    for (int l = 0; l < layers_ && t5_; ++l) {
      if (t.name == kv("cross", "key", l)) addr = cross_[2 * l].get();
      if (t.name == kv("cross", "value", l)) addr = cross_[2 * l + 1].get();
    }
    if (addr == nullptr) {
      DeviceBuffer& d = din[t.name];
      d.resize(static_cast<size_t>(volume(prefill_ctx_.shape(t.name))) * element_size(t.type) + 4);
      addr = d.get();
    }
    prefill_ctx_.set_address(t.name, addr);
  }
  prefill_ctx_.enqueue(s);

  // present K/V (rows, H, Lk, Dh) -> cache (rows, H, capacity, Dh) at index 0; key_bias (rows, Lk) likewise
  const int lk = static_cast<int>(prefill_ctx_.shape("key_bias")[1]);
  for (int l = 0; l < layers_; ++l) {
    for (int kvi = 0; kvi < 2; ++kvi) {
      const std::string name = kv("present", kvi == 0 ? "key" : "value", l);
      cuda_check(cudaMemcpy2DAsync(cache_[2 * l + kvi].get(), static_cast<size_t>(capacity_) * head_dim_ * sizeof(float),
                                   din[name].get(), static_cast<size_t>(lk) * head_dim_ * sizeof(float),
                                   static_cast<size_t>(lk) * head_dim_ * sizeof(float),
                                   static_cast<size_t>(rows) * heads_, cudaMemcpyDeviceToDevice, s),
                 "cache fill");
    }
  }
  cuda_check(cudaMemcpy2DAsync(bias_.get(), capacity_ * sizeof(float), din["key_bias"].get(), lk * sizeof(float),
                               lk * sizeof(float), rows, cudaMemcpyDeviceToDevice, s), "bias fill");
  std::vector<int64_t> pos(rows, n_text);
  host_out_.resize(std::max(host_out_.bytes(), (rows + 1) * sizeof(int64_t)));
  std::memcpy(host_out_.get(), pos.data(), rows * sizeof(int64_t));
  cuda_check(cudaMemcpyAsync(position_rows_.get(), host_out_.get(), rows * sizeof(int64_t), cudaMemcpyHostToDevice, s),
             "position");
  cuda_check(cudaMemcpyAsync(position_dev_.get(), host_out_.get(), sizeof(int64_t), cudaMemcpyHostToDevice, s),
             "position");
  stream_.synchronize("prefill");

  auto fetch = [&](float* dst, const char* name, size_t per_token) {
    if (dst == nullptr) return;
    cuda_check(cudaMemcpy(dst, din[name].get(), static_cast<size_t>(rows) * n_text * per_token * sizeof(float),
                          cudaMemcpyDeviceToHost), "prefill download");
  };
  fetch(out.logits, "logits", vocab_);
  fetch(out.hidden, "hidden", hidden_);
  fetch(out.corners, "corners", corners_);
  fetch(out.point_logits, "point_logits", point_logits_);
  bind_step();
}

void TrtDecoderSession::bind_step() {
  const int r = rows_;
  step_ctx_.set_input_shape("tokens", {r});
  step_ctx_.set_input_shape("position", {r});
  step_ctx_.set_input_shape("image_hw", {r, 2});
  step_ctx_.set_input_shape("past_key_bias", {r, capacity_});
  step_ctx_.set_address("tokens", tokens_.get());
  step_ctx_.set_address("position", position_rows_.get());
  step_ctx_.set_address("image_hw", image_hw_.get());
  step_ctx_.set_address("past_key_bias", bias_.get());
  for (int l = 0; l < layers_; ++l) {
    for (int kvi = 0; kvi < 2; ++kvi) {
      const char* kind = kvi == 0 ? "key" : "value";
      step_ctx_.set_input_shape(kv("past", kind, l), {r, heads_, capacity_, head_dim_});
      step_ctx_.set_address(kv("past", kind, l), cache_[2 * l + kvi].get());
      step_ctx_.set_address(kv("present", kind, l), fresh_[2 * l + kvi].get());
      if (t5_) {
        step_ctx_.set_input_shape(kv("cross", kind, l), {r, heads_, encoder_len_, head_dim_});
        step_ctx_.set_address(kv("cross", kind, l), cross_[2 * l + kvi].get());
      }
    }
  }
  if (t5_) {
    step_ctx_.set_input_shape("encoder_key_bias", {r, encoder_len_});
    step_ctx_.set_address("encoder_key_bias", enc_bias_.get());
  }
  step_ctx_.set_address("logits", logits_.get());
  step_ctx_.set_address("hidden", hidden_dev_.get());
  step_ctx_.set_address("corners", corners_dev_.get());
  step_ctx_.set_address("point_logits", point_logits_dev_.get());
}

// Everything of one step on the stream; fixed shapes and addresses, so it can be captured and replayed.
void TrtDecoderSession::step_body(bool greedy) {
  cudaStream_t s = stream_.get();
  const size_t r = static_cast<size_t>(rows_);
  char* hin = host_in_.as<char>();
  cuda_check(cudaMemcpyAsync(tokens_.get(), hin, r * sizeof(int64_t), cudaMemcpyHostToDevice, s), "tokens");
  if (greedy)
    cuda_check(cudaMemcpyAsync(finished_.get(), hin + r * sizeof(int64_t), r, cudaMemcpyHostToDevice, s), "finished");
  launch_key_bias_update(bias_.as<float>(), tokens_.as<int64_t>(), position_dev_.as<int64_t>(),
                         position_rows_.as<int64_t>(), rows_, capacity_, base_, t5_, false, s);
  step_ctx_.enqueue(s);
  launch_kv_append(ptr_src_.as<const float* const>(), ptr_dst_.as<float* const>(), layers_, rows_, heads_, head_dim_,
                   capacity_, base_, position_dev_.as<int64_t>(), s);
  launch_key_bias_update(bias_.as<float>(), tokens_.as<int64_t>(), position_dev_.as<int64_t>(),
                         position_rows_.as<int64_t>(), rows_, capacity_, base_, t5_, true, s);
  if (greedy) {
    launch_greedy_pick(logits_.as<float>(), rows_, vocab_, tokens_.as<int64_t>(), finished_.as<uint8_t>(), eos_,
                       logprob_.as<float>(), s);
    char* hout = host_out_.as<char>();
    cuda_check(cudaMemcpyAsync(hout, tokens_.get(), r * sizeof(int64_t), cudaMemcpyDeviceToHost, s), "pick");
    cuda_check(cudaMemcpyAsync(hout + r * sizeof(int64_t), logprob_.get(), r * sizeof(float), cudaMemcpyDeviceToHost, s),
               "pick");
    cuda_check(cudaMemcpyAsync(hout + r * (sizeof(int64_t) + sizeof(float)), corners_dev_.get(),
                               r * corners_ * sizeof(float), cudaMemcpyDeviceToHost, s), "pick");
  }
}

void TrtDecoderSession::step(const int32_t* tokens, const DecoderOutputs& out) {
  if (rows_ == 0) core::fail(ErrorCode::Internal, "tensorrt: step before prefill");
  if (position_ >= limits_.max_text) core::fail(ErrorCode::LimitExceeded, "tensorrt: decode reached max_text");
  check_tokens(tokens, rows_);
  host_in_.resize(static_cast<size_t>(rows_) * (sizeof(int64_t) + 1));
  for (int i = 0; i < rows_; ++i) host_in_.as<int64_t>()[i] = tokens[i];
  step_body(false);
  stream_.synchronize("step");
  step_ran_ = true;
  ++position_;
  download(out, 1);
}

GreedyStep TrtDecoderSession::step_greedy(const int32_t* tokens, const uint8_t* finished, int32_t eos_id) {
  if (rows_ == 0) core::fail(ErrorCode::Internal, "tensorrt: step before prefill");
  if (eos_id != eos_) return DecoderSession::step_greedy(tokens, finished, eos_id);
  if (position_ >= limits_.max_text) core::fail(ErrorCode::LimitExceeded, "tensorrt: decode reached max_text");
  check_tokens(tokens, rows_);
  const size_t r = static_cast<size_t>(rows_);
  host_in_.resize(r * (sizeof(int64_t) + 1));
  for (size_t i = 0; i < r; ++i) {
    host_in_.as<int64_t>()[i] = tokens[i];
    host_in_.as<uint8_t>()[r * sizeof(int64_t) + i] = finished ? finished[i] : 0;
  }
  cudaStream_t s = stream_.get();
  if (graph_.ready()) {
    graph_.launch(s);
  } else {
    // TensorRT needs one plain enqueueV3 with these shapes before a capture; later steps replay the graph.
    const bool capture = model_->options().cuda_graphs && step_ran_ && !graph_failed_;
    if (capture && graph_.capture(s, [&] { step_body(true); }, &graph_reason_)) {
      graph_.launch(s);
    } else {
      if (capture) {
        graph_failed_ = true;   // fall back to direct launches for this session
        logger().log(nvinfer1::ILogger::Severity::kWARNING,
                     ("decode step CUDA graph capture failed, running without: " + graph_reason_).c_str());
      }
      step_body(true);
    }
  }
  stream_.synchronize("greedy step");
  step_ran_ = true;
  ++position_;
  GreedyStep g;
  const char* hout = host_out_.as<const char>();
  g.tokens.resize(r);
  g.logprobs.resize(r);
  g.corners.resize(r * corners_);
  for (size_t i = 0; i < r; ++i) g.tokens[i] = static_cast<int32_t>(reinterpret_cast<const int64_t*>(hout)[i]);
  std::memcpy(g.logprobs.data(), hout + r * sizeof(int64_t), r * sizeof(float));
  std::memcpy(g.corners.data(), hout + r * (sizeof(int64_t) + sizeof(float)), r * corners_ * sizeof(float));
  return g;
}

void TrtDecoderSession::download(const DecoderOutputs& out, int n) {
  auto get = [&](float* dst, const DeviceBuffer& src, int per) {
    if (dst)
      cuda_check(cudaMemcpy(dst, src.get(), static_cast<size_t>(rows_) * n * per * sizeof(float), cudaMemcpyDeviceToHost),
                 "step download");
  };
  get(out.logits, logits_, vocab_);
  get(out.hidden, hidden_dev_, hidden_);
  get(out.corners, corners_dev_, corners_);
  get(out.point_logits, point_logits_dev_, point_logits_);
}

void TrtDecoderSession::reorder(const int32_t* parents) {
  for (int i = 0; i < rows_; ++i)
    if (parents[i] < 0 || parents[i] >= rows_) core::fail(ErrorCode::InvalidArgument, "reorder: parent out of range");
  cudaStream_t s = stream_.get();
  host_in_.resize(static_cast<size_t>(rows_) * sizeof(int32_t));
  std::memcpy(host_in_.get(), parents, rows_ * sizeof(int32_t));
  cuda_check(cudaMemcpyAsync(parents_.get(), host_in_.get(), rows_ * sizeof(int32_t), cudaMemcpyHostToDevice, s),
             "parents");
  auto gather = [&](DeviceBuffer& buf, int64_t row_elems) {
    launch_gather_rows(buf.as<float>(), scratch_.as<float>(), parents_.as<int32_t>(), rows_, row_elems, s);
    cuda_check(cudaMemcpyAsync(buf.get(), scratch_.get(), rows_ * row_elems * sizeof(float), cudaMemcpyDeviceToDevice, s),
               "reorder");
  };
  for (auto& c : cache_) gather(c, static_cast<int64_t>(heads_) * capacity_ * head_dim_);
  for (auto& c : cross_) gather(c, static_cast<int64_t>(heads_) * encoder_len_ * head_dim_);
  gather(bias_, capacity_);
  if (t5_) gather(enc_bias_, encoder_len_);
  gather(image_hw_, 2);
  stream_.synchronize("reorder");
}

}  // namespace

std::unique_ptr<DecoderSession> new_trt_decoder_session(std::shared_ptr<TrtModel> model, const DecoderLimits& limits) {
  return std::make_unique<TrtDecoderSession>(std::move(model), limits);
}

}  // namespace pixelllm::runtime::trt
