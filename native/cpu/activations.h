// Elementwise activations, in place over n contiguous floats.
#pragma once

#include <cstdint>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)) (torch approximate='none', jax approximate=False).
void gelu(float* x, int64_t n, core::ThreadPool* pool = nullptr);
// Tanh GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (torch approximate='tanh', jax default, T5 gelu_new).
void gelu_tanh(float* x, int64_t n, core::ThreadPool* pool = nullptr);
// SiLU / swish: x * sigmoid(x).
void silu(float* x, int64_t n, core::ThreadPool* pool = nullptr);
// Gated units: out[i] = act(gate[i]) * up[i]; out may alias gate or up. (SwiGLU = silu, T5 gated-gelu = gelu_tanh.)
void silu_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool = nullptr);
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, core::ThreadPool* pool = nullptr);
// ReLU.
void relu(float* x, int64_t n, core::ThreadPool* pool = nullptr);

}  // namespace pixelllm::cpu
