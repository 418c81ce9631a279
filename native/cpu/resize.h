// Exact port of jax.image.resize for 'linear' and 'cubic' (Keys a = -0.5) with antialias = true (jax's default),
// following engines/reference/pixelllm_ref/jax_resize.py (jax/_src/image/scale.py, scale_and_translate with
// translation 0). For input size m and output size n along an axis, output j samples input coordinate
// s_j = (j + 0.5) * m / n - 0.5; input pixel i weighs k(|s_j - i| / ks) with ks = max(m / n, 1) when antialiasing
// (1 otherwise); each output's weights are divided by their sum (zero when |sum| <= 1000 * float32 eps); outputs
// whose sample lies outside [-0.5, m - 0.5] are zero. An axis whose size does not change is left untouched.
// The weights are computed in float32 step by step as jax does (the float32 arithmetic of jax_resize.py,
// including numpy's pairwise row sum), so they equal the reference's matrices bit for bit.
#pragma once

#include <cstdint>
#include <vector>

namespace pixelllm::core {
class ThreadPool;
}

namespace pixelllm::cpu {

enum class ResizeMethod { Linear, Cubic };

// Dense (out_size, in_size) weight matrix (row j = weights of output j); identity when in_size == out_size.
std::vector<float> resize_weights(int64_t in_size, int64_t out_size, ResizeMethod method, bool antialias = true);

// Sparse form of the same weights: output j reads in[first[j] .. first[j] + count[j]) with weights
// w[offset[j] ...].
struct ResizePlan {
  int64_t in_size = 0, out_size = 0;
  std::vector<int64_t> first, count, offset;
  std::vector<float> w;
  bool identity = false;
};
ResizePlan resize_plan(int64_t in_size, int64_t out_size, ResizeMethod method, bool antialias = true);

// NHWC resize (B, H, W, C) -> (B, OH, OW, C): along H first, then W (the order jax_resize.py uses).
// `scratch` needs resize_scratch_size(...) floats (the intermediate (B, OH, W, C)); y must not alias x.
void resize_nhwc(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float* y,
                 int64_t out_height, int64_t out_width, ResizeMethod method, bool antialias, float* scratch,
                 core::ThreadPool* pool = nullptr);
int64_t resize_scratch_size(int64_t batch, int64_t out_height, int64_t width, int64_t channels);

}  // namespace pixelllm::cpu
