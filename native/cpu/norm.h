// Normalisations over the last dimension of row-major (rows, dim) activations.
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance, as torch.nn.LayerNorm / flax LayerNorm).
// gamma/beta may be null (1 / 0). y may alias x.
void layer_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta, float eps, float* y,
                core::ThreadPool* pool = nullptr);

// Fused residual add + LayerNorm (pre-norm transformer blocks): residual += delta, then y = LN(residual).
// y may alias delta but not residual.
void add_layer_norm(float* residual, const float* delta, int64_t rows, int64_t dim, const float* gamma,
                    const float* beta, float eps, float* y, core::ThreadPool* pool = nullptr);

// T5 LayerNorm (RMS, no mean, no bias): y = x / sqrt(mean(x^2) + eps) * gamma. y may alias x.
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
              core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::cpu
