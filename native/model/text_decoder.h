// The ONE interface both text heads (git_decoder, t5) implement; pipeline/decoding drives it.
//
// Incremental use, per request:
//   auto state = decoder.new_state(limits);            // all buffers (KV caches, scratch) allocated here, once
//   decoder.prefill(*state, visual, nv, context, nc, num_sequences);   // prefix (GIT) / encoder (T5), once
//   decoder.step(*state, tokens, logits, hidden);      // one token per live sequence, all at the same position
//   decoder.reorder(*state, parents);                  // beam search: sequence i := old sequence parents[i]
//   decoder.step_rows(states, n, tokens, logits, hidden, ws);  // in-flight batching: several requests' states
//                                                      // advanced by one token in one call (runtime/cpu StepBatcher)
// Teacher-forced use: forward(...) = the official full pass (official masks, every position), for checks and for
// consumers that need all positions (e.g. mask adapter text states over the padded length).
// All methods are const on the decoder (immutable weights, shareable across threads); the state is per request.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace pixelllm::model {

// Opaque per-request decode state (KV caches + scratch), created by TextDecoder::new_state.
class TextDecoderState {
 public:
  virtual ~TextDecoderState() = default;
  int num_sequences() const noexcept { return num_sequences_; }
  int position() const noexcept { return position_; }  // text tokens fed so far (per sequence)

 protected:
  int num_sequences_ = 0;
  int position_ = 0;
};

// Scratch of a multi-request step (TextDecoder::new_workspace); one caller at a time.
class TextDecoderWorkspace {
 public:
  virtual ~TextDecoderWorkspace() = default;
};

struct TextDecoderLimits {
  int max_visual = 32;     // visual tokens of the prefix
  int max_context = 0;     // context tokens of the prefix (0 = none)
  int max_text = 40;       // text positions fed (BOS + generated tokens)
  int max_sequences = 1;   // beams
};

class TextDecoder {
 public:
  virtual ~TextDecoder() = default;

  virtual const char* name() const noexcept = 0;  // "git_decoder" | "t5"
  virtual int hidden_size() const noexcept = 0;   // D of the hidden states (point head input)
  virtual int vocab_size() const noexcept = 0;
  virtual int visual_dim() const noexcept = 0;    // feature size of the visual tokens it takes
  virtual int max_text_positions() const noexcept = 0;  // GIT: position table size; T5: no table (large)

  // LIMIT_EXCEEDED when a limit is out of range (e.g. max_text beyond the position table).
  virtual std::unique_ptr<TextDecoderState> new_state(const TextDecoderLimits& limits) const = 0;

  // Encodes the prefix and empties `num_sequences` text sequences (position 0). visual: (n_visual, visual_dim)
  // row-major; context: n_context token ids (0 = padding, masked) or null. Throws LIMIT_EXCEEDED beyond the
  // state's limits, INVALID_TEXT for token ids outside the vocabulary.
  virtual void prefill(TextDecoderState& state, const float* visual, int n_visual, const int32_t* context,
                       int n_context, int num_sequences) const = 0;

  // Feeds tokens[i] to sequence i (i < num_sequences) at the current position, then advances it.
  // logits: (num_sequences, vocab) or null (skips the vocabulary projection); hidden: (num_sequences, D) or null.
  // LIMIT_EXCEEDED when the position reaches max_text; INVALID_TEXT for ids outside the vocabulary.
  virtual void step(TextDecoderState& state, const int32_t* tokens, float* logits, float* hidden) const = 0;

  // Teacher forcing in one pass: feeds n tokens to every sequence, at positions position() .. position() + n - 1
  // (each attending to the prefix and causally to the text), then advances by n. tokens (num_sequences, n);
  // logits (num_sequences, n, vocab) or null; hidden (num_sequences, n, D) or null. Equals n step() calls
  // (git_decoder: bit for bit, one GEMM per projection over all n rows instead of n GEMVs). LIMIT_EXCEEDED when
  // the n positions do not fit max_text; INVALID_TEXT as step(). Default: n step() calls (a failing one leaves
  // the steps before it done; git_decoder checks everything first).
  virtual void step_block(TextDecoderState& state, const int32_t* tokens, int n, float* logits, float* hidden) const;

  // Multi-request step: advances `count` states (distinct, each prefilled) by one token in one call. Rows are the
  // states' sequences in order (state 0's num_sequences rows first, ...): tokens (total rows), logits (total rows,
  // vocab) or null, hidden (total rows, D) or null. Each state keeps its own position, prefix and KV caches; the
  // results equal `count` step() calls up to float summation order (one GEMM over all rows instead of a GEMV
  // per state). LIMIT_EXCEEDED / INVALID_TEXT as step() (git_decoder checks every state before changing any).
  // `workspace` comes from new_workspace(max_rows >= total rows) or is null. Default: one step() per state.
  virtual std::unique_ptr<TextDecoderWorkspace> new_workspace(int max_rows) const;
  virtual void step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits,
                         float* hidden, TextDecoderWorkspace* workspace) const;

  // Beam search: sequence i becomes a copy of the old sequence parents[i] (0 <= parents[i] < num_sequences).
  virtual void reorder(TextDecoderState& state, const int* parents) const = 0;

  // True when forward() equals prefill + one step per token on the same rows (GIT: text rows attend to the prefix
  // and causally, and trailing context padding is left out of the prefix), so a decode state can be continued
  // instead of running the pass again. T5's official pass treats the rows after EOS differently: false.
  virtual bool forward_continues_steps() const noexcept { return false; }

  // Official teacher-forced pass over n_tokens text tokens (including the T5 "decoder target" padding masks):
  // logits (n_tokens, vocab) or null, hidden (n_tokens, D) or null.
  virtual void forward(const float* visual, int n_visual, const int32_t* context, int n_context,
                       const int32_t* tokens, int n_tokens, float* logits, float* hidden) const = 0;
};

inline std::unique_ptr<TextDecoderWorkspace> TextDecoder::new_workspace(int) const { return nullptr; }

inline void TextDecoder::step_block(TextDecoderState& state, const int32_t* tokens, int n, float* logits,
                                    float* hidden) const {
  const int ns = state.num_sequences();
  const long long V = vocab_size(), D = hidden_size();
  std::vector<int32_t> column(ns);
  std::vector<float> l(logits ? static_cast<size_t>(ns * V) : 0), h(hidden ? static_cast<size_t>(ns * D) : 0);
  for (int p = 0; p < n; ++p) {
    for (int r = 0; r < ns; ++r) column[r] = tokens[static_cast<size_t>(r) * n + p];
    step(state, column.data(), logits ? l.data() : nullptr, hidden ? h.data() : nullptr);
    for (int r = 0; r < ns; ++r) {
      if (logits) std::copy(l.begin() + r * V, l.begin() + (r + 1) * V, logits + (static_cast<long long>(r) * n + p) * V);
      if (hidden) std::copy(h.begin() + r * D, h.begin() + (r + 1) * D, hidden + (static_cast<long long>(r) * n + p) * D);
    }
  }
}

inline void TextDecoder::step_rows(TextDecoderState* const* states, int count, const int32_t* tokens, float* logits,
                                   float* hidden, TextDecoderWorkspace*) const {
  const long long V = vocab_size(), D = hidden_size();
  long long row = 0;
  for (int i = 0; i < count; ++i) {
    step(*states[i], tokens + row, logits ? logits + row * V : nullptr, hidden ? hidden + row * D : nullptr);
    row += states[i]->num_sequences();
  }
}

}  // namespace pixelllm::model
