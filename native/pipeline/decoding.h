// Text decoding over a backend's runtime::DecoderSession (text decoder + fused point head; native/runtime/backend.h),
// so every backend (cpu, tensorrt) reuses it unchanged: greedy (through DecoderSession::step_greedy, a backend's
// fast path), beam search and teacher forcing, with the official PixelLLM rules (scenic `pixel_llm/auto_regressive_decode.py`, `PixelLlmModel.inference`), mirrored by
// `engines/reference/pixelllm_ref/decoding.py`.
//
// The official decode buffer has `max_length` slots: [BOS, EOS, EOS, ...]; step cur = 1 .. max_length-2 reads the
// logits at position cur-1 and writes position cur, so the LAST slot is never written (it keeps EOS) and at most
// max_length-2 words are generated. Greedy: the previous token's logit becomes min(logit, -1e4); after EOS the row
// would be forced to EOS with log-prob 0, so we stop there (identical tokens and score); score = sum of the chosen
// log-probs / max(#words, 1). Beam: the official t5x-style search (per_node_beams * beams candidates, finished
// beams leave the live set with -1e7, finished score = logprob / ((5 + cur) / 6)^alpha, best = highest score);
// the official beam search has no repeat suppression (beam_no_repeat adds it).
// Points: the hidden state at position p (input token p) gives the corners of token p; the box is the corners at
// the position just before EOS (official point_output_ignore '^end-1'), i.e. of the last word (of BOS when no
// word was generated). Events are emitted once per word (BOS and EOS carry none), right after the word is fed, so
// its corners are known; beam search emits the best beam's events at the end.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "pipeline/pipeline.h"
#include "runtime/backend.h"

namespace pixelllm::pipeline {

struct DecodeOptions {
  int max_length = 0;          // official max_caption_length (buffer slots incl. BOS and the unwritten last), >= 2
  int32_t bos_id = 0, eos_id = 0;
  int beams = 1;               // 1 = greedy
  int per_node_beams = 2;      // official decode_per_node_beam_size
  float alpha = 0.6f;          // official brevity penalty exponent
  bool beam_no_repeat = false; // beam search with the greedy repeat rule (not official)
  float image_width = 0, image_height = 0;  // unpadded image size: corners are pixels of it
  // Model sizes the buffers need (the session does not expose them): vocabulary and points per token.
  int vocab_size = 0;
  int num_points = 2;
};

// The prefix the decoder conditions on (one prompt; decoding repeats it per beam as DecoderSession::prefill wants).
struct DecodeInput {
  const float* visual = nullptr;  // (n_visual, visual_dim) visual tokens
  int n_visual = 0;
  int visual_dim = 0;
  const int32_t* context = nullptr;  // context token ids (0 = padding) or null (= one 0 token, the session rule)
  int n_context = 0;
};

struct DecodeResult {
  std::vector<int32_t> sequence;  // BOS, words..., EOS (the official buffer up to its first EOS)
  std::vector<int32_t> tokens;    // the words (no BOS / EOS)
  std::vector<TokenEvent> events; // one per word, as on_token received them
  float score = 0;                // greedy: official mean log-prob; beam: official beam score;
                                  // teacher-forced: mean log-prob of the words and the EOS
  Box box;                        // min/max of the corners at the position before EOS
  int positions = 0;              // positions fed whose outputs are below: sequence.size() - 1
  std::vector<float> corners;     // (positions, num_points, 2) pixels
  // Beam search only: every beam's full official buffer (max_length ids) and score, increasing score order.
  std::vector<std::vector<int32_t>> beam_sequences;
  std::vector<float> beam_scores;
};

using TokenCallback = std::function<void(const TokenEvent&)>;

// Limits a session must have for `options` (backend.text_decoder->new_session(decode_limits(...))).
// max_text_tokens: for teacher_forced, the text length (else 0).
runtime::DecoderLimits decode_limits(const DecodeInput& input, const DecodeOptions& options, int max_text_tokens = 0);

// Validates options (INVALID_ARGUMENT / LIMIT_EXCEEDED) and dispatches: beams == 1 -> greedy, else beam search.
// `cancel` is checked before every decoder call: ABORTED when set. on_token may be empty. The session is
// (re)prefilled here and may be reused for another decode afterwards.
DecodeResult generate(runtime::DecoderSession& session, const DecodeInput& input, const DecodeOptions& options,
                      const TokenCallback& on_token, const std::atomic<bool>& cancel);

DecodeResult greedy_decode(runtime::DecoderSession& session, const DecodeInput& input, const DecodeOptions& options,
                           const TokenCallback& on_token, const std::atomic<bool>& cancel);

DecodeResult beam_search(runtime::DecoderSession& session, const DecodeInput& input, const DecodeOptions& options,
                         const TokenCallback& on_token, const std::atomic<bool>& cancel);

// The referring path (official with_cap=False): text = [BOS, words..., EOS] optionally followed by 0 padding
// (INVALID_TEXT otherwise) is fed as is (one prefill); events carry each word's log-prob under the model.
DecodeResult teacher_forced(runtime::DecoderSession& session, const DecodeInput& input, const DecodeOptions& options,
                            const std::vector<int32_t>& text, const TokenCallback& on_token,
                            const std::atomic<bool>& cancel);

}  // namespace pixelllm::pipeline
