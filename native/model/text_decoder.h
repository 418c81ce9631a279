// The ONE interface both text heads (git_decoder, t5) implement; pipeline/decoding drives it.
//
// Incremental use, per request:
//   auto state = decoder.new_state(limits);            // all buffers (KV caches, scratch) allocated here, once
//   decoder.prefill(*state, visual, nv, context, nc, num_sequences);   // prefix (GIT) / encoder (T5), once
//   decoder.step(*state, tokens, logits, hidden);      // one token per live sequence, all at the same position
//   decoder.reorder(*state, parents);                  // beam search: sequence i := old sequence parents[i]
// Teacher-forced use: forward(...) = the official full pass (official masks, every position), for checks and for
// consumers that need all positions (e.g. mask adapter text states over the padded length).
// All methods are const on the decoder (immutable weights, shareable across threads); the state is per request.
#pragma once

#include <cstdint>
#include <memory>

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

  // Beam search: sequence i becomes a copy of the old sequence parents[i] (0 <= parents[i] < num_sequences).
  virtual void reorder(TextDecoderState& state, const int* parents) const = 0;

  // Official teacher-forced pass over n_tokens text tokens (including the T5 "decoder target" padding masks):
  // logits (n_tokens, vocab) or null, hidden (n_tokens, D) or null.
  virtual void forward(const float* visual, int n_visual, const int32_t* context, int n_context,
                       const int32_t* tokens, int n_tokens, float* logits, float* hidden) const = 0;
};

}  // namespace pixelllm::model
