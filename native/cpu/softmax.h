// Row softmax with max subtraction, in place over row-major (rows, cols).
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// x[r, :] = softmax(scale * x[r, :]). Rows that are entirely -inf become all zeros (never NaN).
void softmax(float* x, int64_t rows, int64_t cols, float scale = 1.0f, core::ThreadPool* pool = nullptr);
// log_softmax of one row into out (may alias x); used by decoding for log-probs.
void log_softmax(const float* x, int64_t cols, float* out);

}  // namespace pixelllm::cpu
