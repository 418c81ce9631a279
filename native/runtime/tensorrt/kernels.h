// Our CUDA kernels around the TensorRT decode step. Every kernel reads the decode position from DEVICE memory, so
// one captured CUDA graph replays every step unchanged (no host round trip, no per-step kernel parameters).
//
// Cache layout (the decoder_step graph's past_key.i / past_value.i): (rows, heads, capacity, head_dim) float32;
// key bias (rows, capacity) float32 additive (0 = attend).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace pixelllm::runtime::trt {

// Appends the step's K/V rows (rows, heads, 1, head_dim) at cache index `base + *position` of every layer.
// `src` / `dst`: arrays of `layers * 2` device pointers (key.0, value.0, key.1, ...), themselves in device memory.
void launch_kv_append(const float* const* src, float* const* dst, int layers, int rows, int heads, int head_dim,
                      int capacity, int base, const int64_t* position, cudaStream_t stream);

// Before the step at p = *position: T5 (t5_rule = true) sets bias[base + p - 1] = tokens[r] == 0 ? -1e10 : 0 for
// p > 0 (the official "key valid iff the next token is not 0" rule); both heads leave the rest alone.
// After the step (after = true): bias[base + p] = 0, *position += 1 and position_rows[r] = p + 1 (the step graph's
// per-row `position` input).
void launch_key_bias_update(float* bias, const int64_t* tokens, int64_t* position, int64_t* position_rows, int rows,
                            int capacity, int base, bool t5_rule, bool after, cudaStream_t stream);

// Greedy choice per row over logits (rows, vocab): the previous token (tokens[r]) is capped at -1e4; rows with
// finished[r] != 0 choose eos with log-prob 0 (and stay finished); a row choosing eos becomes finished.
// Writes next token (int64, the next step's input, may alias tokens) and its log-probability.
void launch_greedy_pick(const float* logits, int rows, int vocab, int64_t* tokens, uint8_t* finished, int32_t eos_id,
                        float* logprob, cudaStream_t stream);

// Beam reorder: dst row r := src row parents[r], for `row_elems` floats per row (parents in device memory).
void launch_gather_rows(const float* src, float* dst, const int32_t* parents, int rows, int64_t row_elems,
                        cudaStream_t stream);

}  // namespace pixelllm::runtime::trt
