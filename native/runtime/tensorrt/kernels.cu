#include "runtime/tensorrt/kernels.h"

#include <cfloat>

namespace pixelllm::runtime::trt {
namespace {

__global__ void kv_append_kernel(const float* const* src, float* const* dst, int rows, int heads, int head_dim,
                                 int capacity, int base, const int64_t* position) {
  const int tensor = blockIdx.y;                     // layer * 2 + (key | value)
  const int64_t n = static_cast<int64_t>(rows) * heads * head_dim;
  const int64_t at = base + *position;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t block = i / head_dim;              // row * heads + head
    const int64_t d = i % head_dim;
    dst[tensor][(block * capacity + at) * head_dim + d] = src[tensor][i];
  }
}

__global__ void key_bias_kernel(float* bias, const int64_t* tokens, int64_t* position, int64_t* position_rows, int rows,
                                int capacity, int base, bool t5_rule, bool after) {
  const int64_t p = *position;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t row = static_cast<int64_t>(r) * capacity + base;
    if (!after && t5_rule && p > 0) bias[row + p - 1] = tokens[r] == 0 ? -1e10f : 0.f;
    if (after) {
      bias[row + p] = 0.f;
      position_rows[r] = p + 1;
    }
  }
  __syncthreads();
  if (after && blockIdx.x == 0 && threadIdx.x == 0) *position = p + 1;
}

// One block per row: max (with the repeat cap), then sum of exp, then the choice.
__global__ void greedy_kernel(const float* logits, int vocab, int64_t* tokens, uint8_t* finished, int32_t eos_id,
                              float* logprob) {
  const int r = blockIdx.x;
  const float* row = logits + static_cast<int64_t>(r) * vocab;
  const int64_t prev = tokens[r];
  __shared__ float s_val[256];
  __shared__ int s_idx[256];
  float best = -FLT_MAX;
  int best_i = 0;
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    float x = row[v];
    if (v == prev) x = fminf(x, -1e4f);
    if (x > best || (x == best && v < best_i)) {
      best = x;
      best_i = v;
    }
  }
  s_val[threadIdx.x] = best;
  s_idx[threadIdx.x] = best_i;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float o = s_val[threadIdx.x + s];
      const int oi = s_idx[threadIdx.x + s];
      if (o > s_val[threadIdx.x] || (o == s_val[threadIdx.x] && oi < s_idx[threadIdx.x])) {
        s_val[threadIdx.x] = o;
        s_idx[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const float m = s_val[0];
  const int choice = s_idx[0];
  __syncthreads();
  float sum = 0.f;
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    float x = row[v];
    if (v == prev) x = fminf(x, -1e4f);
    sum += expf(x - m);
  }
  s_val[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) s_val[threadIdx.x] += s_val[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (finished[r]) {
      tokens[r] = eos_id;
      logprob[r] = 0.f;
    } else {
      tokens[r] = choice;
      logprob[r] = -logf(s_val[0]);
      if (choice == eos_id) finished[r] = 1;
    }
  }
}

__global__ void gather_rows_kernel(const float* src, float* dst, const int32_t* parents, int rows, int64_t row_elems) {
  const int64_t n = rows * row_elems;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_elems;
    dst[i] = src[parents[r] * row_elems + i % row_elems];
  }
}

int blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

}  // namespace

void launch_kv_append(const float* const* src, float* const* dst, int layers, int rows, int heads, int head_dim,
                      int capacity, int base, const int64_t* position, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(rows) * heads * head_dim;
  const dim3 grid(blocks_for(n, 256), layers * 2);
  kv_append_kernel<<<grid, 256, 0, stream>>>(src, dst, rows, heads, head_dim, capacity, base, position);
}

void launch_key_bias_update(float* bias, const int64_t* tokens, int64_t* position, int64_t* position_rows, int rows,
                            int capacity, int base, bool t5_rule, bool after, cudaStream_t stream) {
  // a single block, so the position update after __syncthreads is ordered after every row's write
  key_bias_kernel<<<1, 128, 0, stream>>>(bias, tokens, position, position_rows, rows, capacity, base, t5_rule,
                                         after);
}

void launch_greedy_pick(const float* logits, int rows, int vocab, int64_t* tokens, uint8_t* finished, int32_t eos_id,
                        float* logprob, cudaStream_t stream) {
  greedy_kernel<<<rows, 256, 0, stream>>>(logits, vocab, tokens, finished, eos_id, logprob);
}

void launch_gather_rows(const float* src, float* dst, const int32_t* parents, int rows, int64_t row_elems,
                        cudaStream_t stream) {
  gather_rows_kernel<<<blocks_for(rows * row_elems, 256), 256, 0, stream>>>(src, dst, parents, rows, row_elems);
}

}  // namespace pixelllm::runtime::trt
