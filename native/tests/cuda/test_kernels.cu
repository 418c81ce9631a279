// Our CUDA kernels (runtime/tensorrt/kernels.cu) against plain C++ references, on a GPU, without TensorRT:
// the KV-cache append, the key-bias / position update, the greedy pick and the beam row gather, each at the shapes
// of the demo, official-bert and T5 heads, and the claim the decode loop rests on: one CUDA graph captured once
// replays every step (the position lives in device memory and advances on the device).
// The cases use the native tests' harness (tests/test.h: TEST, CHECK*, Rng; main in tests/test_main.cc).
//   scripts/check-cuda-kernels.sh --run      (builds this with nvcc and runs it; "SKIPPED" without a GPU)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "runtime/tensorrt/kernels.h"
#include "tests/test.h"

namespace trt = pixelllm::runtime::trt;
using pixelllm::test::Rng;

namespace {

// A CUDA call that fails ends the program: nothing after it can be trusted (no GPU, a broken driver, a bad launch).
#define CHECK_CUDA(x)                                                                                   \
  do {                                                                                                  \
    const cudaError_t e_ = (x);                                                                         \
    if (e_ != cudaSuccess) {                                                                            \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));          \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

// `wrong` values differ from the reference in the case `what` (one report per case, not per value).
void check_none_wrong(int64_t wrong, const std::string& what) {
  if (wrong != 0) pixelllm::test::report(__FILE__, __LINE__, what + ": " + std::to_string(wrong) + " wrong");
}

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, sizeof(T) * (h.empty() ? 1 : h.size())));
  if (!h.empty()) CHECK_CUDA(cudaMemcpy(d, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice));
  return d;
}

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), d, sizeof(T) * n, cudaMemcpyDeviceToHost));
  return h;
}

// The caches of `layers` layers (key, value each), the step's rows, one append at base + position.
void test_kv_append(int layers, int rows, int heads, int head_dim, int capacity, int base, int64_t position,
                    Rng& rng) {
  const size_t step_n = static_cast<size_t>(rows) * heads * head_dim;
  const size_t cache_n = static_cast<size_t>(rows) * heads * capacity * head_dim;
  std::vector<std::vector<float>> src(layers * 2), cache(layers * 2);
  std::vector<float*> d_src(layers * 2), d_dst(layers * 2);
  for (int t = 0; t < layers * 2; ++t) {
    src[t] = rng.vec(step_n, -4.f, 4.f);
    cache[t] = rng.vec(cache_n, 100.f, 200.f);  // the old contents: must survive outside the slot
    d_src[t] = to_device(src[t]);
    d_dst[t] = to_device(cache[t]);
  }
  const float* const* dp_src = to_device(std::vector<const float*>(d_src.begin(), d_src.end()));
  float* const* dp_dst = to_device(d_dst);
  int64_t* d_pos = to_device(std::vector<int64_t>{position});
  trt::launch_kv_append(dp_src, dp_dst, layers, rows, heads, head_dim, capacity, base, d_pos, nullptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  int64_t wrong = 0;
  for (int t = 0; t < layers * 2; ++t) {
    std::vector<float> want = cache[t];
    for (int64_t b = 0; b < static_cast<int64_t>(rows) * heads; ++b)
      for (int d = 0; d < head_dim; ++d)
        want[(b * capacity + base + position) * head_dim + d] = src[t][b * head_dim + d];
    const auto got = to_host(d_dst[t], cache_n);
    for (size_t i = 0; i < cache_n; ++i) wrong += got[i] != want[i];
    CHECK_CUDA(cudaFree(d_src[t]));
    CHECK_CUDA(cudaFree(d_dst[t]));
  }
  check_none_wrong(wrong, "kv_append layers=" + std::to_string(layers) + " rows=" + std::to_string(rows) + " heads=" +
                              std::to_string(heads) + " head_dim=" + std::to_string(head_dim) + " position=" +
                              std::to_string(position));
  CHECK_CUDA(cudaFree(const_cast<const float**>(dp_src)));
  CHECK_CUDA(cudaFree(const_cast<float**>(dp_dst)));
  CHECK_CUDA(cudaFree(d_pos));
}

void test_key_bias(int rows, int capacity, int base, int64_t position, bool t5_rule, bool after, Rng& rng) {
  std::vector<float> bias = rng.vec(static_cast<size_t>(rows) * capacity, -3.f, -1.f);
  std::vector<int64_t> tokens(rows), position_rows(rows, -7);
  for (int r = 0; r < rows; ++r) tokens[r] = (r % 3 == 0) ? 0 : 5 + r;
  float* d_bias = to_device(bias);
  int64_t* d_tokens = to_device(tokens);
  int64_t* d_pos = to_device(std::vector<int64_t>{position});
  int64_t* d_rows = to_device(position_rows);
  trt::launch_key_bias_update(d_bias, d_tokens, d_pos, d_rows, rows, capacity, base, t5_rule, after, nullptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> want = bias;
  std::vector<int64_t> want_rows = position_rows;
  for (int r = 0; r < rows; ++r) {
    const int64_t row = static_cast<int64_t>(r) * capacity + base;
    if (!after && t5_rule && position > 0) want[row + position - 1] = tokens[r] == 0 ? -1e10f : 0.f;
    if (after) {
      want[row + position] = 0.f;
      want_rows[r] = position + 1;
    }
  }
  const auto got = to_host(d_bias, want.size());
  int64_t wrong = 0;
  for (size_t i = 0; i < want.size(); ++i) wrong += got[i] != want[i];
  check_none_wrong(wrong, "key_bias bias values, rows=" + std::to_string(rows) + " t5=" + std::to_string(t5_rule) +
                              " after=" + std::to_string(after));
  CHECK(to_host(d_rows, rows) == want_rows);
  CHECK_EQ(to_host(d_pos, 1)[0], position + (after ? 1 : 0));
  CHECK_CUDA(cudaFree(d_bias));
  CHECK_CUDA(cudaFree(d_tokens));
  CHECK_CUDA(cudaFree(d_pos));
  CHECK_CUDA(cudaFree(d_rows));
}

void test_greedy(int rows, int vocab, Rng& rng) {
  const int32_t eos = 3;
  std::vector<float> logits = rng.vec(static_cast<size_t>(rows) * vocab, -4.f, 4.f);
  std::vector<int64_t> tokens(rows);
  std::vector<uint8_t> finished(rows, 0);
  for (int r = 0; r < rows; ++r) {
    float* row = logits.data() + static_cast<size_t>(r) * vocab;
    tokens[r] = 7 + r % (vocab - 7);
    if (r % 4 == 1) row[tokens[r]] = 50.f;                   // the previous token wins unless capped
    if (r % 4 == 2) row[eos] = 60.f;                          // chooses eos -> becomes finished
    if (r % 4 == 3) finished[r] = 1;                          // already finished: eos, log-prob 0
    if (r % 5 == 4) { row[vocab - 1] = 40.f; row[9 + r % 7] = 40.f; }  // a tie: the lower index wins
  }
  float* d_logits = to_device(logits);
  int64_t* d_tokens = to_device(tokens);
  uint8_t* d_fin = to_device(finished);
  float* d_lp = to_device(std::vector<float>(rows, 1.f));
  trt::launch_greedy_pick(d_logits, rows, vocab, d_tokens, d_fin, eos, d_lp, nullptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  const auto got_tok = to_host(d_tokens, rows);
  const auto got_fin = to_host(d_fin, rows);
  const auto got_lp = to_host(d_lp, rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = logits.data() + static_cast<size_t>(r) * vocab;
    int64_t want_tok = eos;
    double want_lp = 0.0;
    uint8_t want_fin = 1;
    if (!finished[r]) {
      double m = -INFINITY;
      int best = 0;
      for (int v = 0; v < vocab; ++v) {
        const double x = v == tokens[r] ? std::fmin(row[v], -1e4f) : row[v];
        if (x > m) { m = x; best = v; }
      }
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += std::exp((v == tokens[r] ? std::fmin(row[v], -1e4f) : row[v]) - m);
      want_tok = best;
      want_lp = -std::log(sum);
      want_fin = best == eos;
    }
    CHECK_EQ(got_tok[r], want_tok);
    CHECK_EQ(int(got_fin[r]), int(want_fin));
    CHECK_NEAR(got_lp[r], want_lp, 1e-5 * (1 + std::fabs(want_lp)));
  }
  CHECK_CUDA(cudaFree(d_logits));
  CHECK_CUDA(cudaFree(d_tokens));
  CHECK_CUDA(cudaFree(d_fin));
  CHECK_CUDA(cudaFree(d_lp));
}

void test_gather(int rows, int64_t row_elems, Rng& rng) {
  const auto src = rng.vec(static_cast<size_t>(rows) * row_elems, -4.f, 4.f);
  std::vector<int32_t> parents(rows);
  for (int r = 0; r < rows; ++r) parents[r] = static_cast<int32_t>((r * 7 + 3) % rows / 2);  // repeats, skips
  float* d_src = to_device(src);
  float* d_dst = to_device(std::vector<float>(src.size(), -1.f));
  int32_t* d_par = to_device(parents);
  trt::launch_gather_rows(d_src, d_dst, d_par, rows, row_elems, nullptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  const auto got = to_host(d_dst, src.size());
  int64_t wrong = 0;
  for (int r = 0; r < rows; ++r)
    for (int64_t i = 0; i < row_elems; ++i) wrong += got[r * row_elems + i] != src[parents[r] * row_elems + i];
  check_none_wrong(wrong, "gather rows=" + std::to_string(rows) + " row_elems=" + std::to_string(row_elems));
  CHECK_CUDA(cudaFree(d_src));
  CHECK_CUDA(cudaFree(d_dst));
  CHECK_CUDA(cudaFree(d_par));
}

// Append + bias update captured once as a CUDA graph and replayed `steps` times: each replay writes the next slot.
void test_graph_replay(int steps) {
  const int layers = 2, rows = 3, heads = 2, head_dim = 8, capacity = 16, base = 4;
  const size_t step_n = static_cast<size_t>(rows) * heads * head_dim;
  const size_t cache_n = static_cast<size_t>(rows) * heads * capacity * head_dim;
  std::vector<float*> d_src(layers * 2), d_dst(layers * 2);
  for (int t = 0; t < layers * 2; ++t) {
    std::vector<float> s(step_n);
    for (size_t i = 0; i < step_n; ++i) s[i] = static_cast<float>(t * 1000 + i);
    d_src[t] = to_device(s);
    d_dst[t] = to_device(std::vector<float>(cache_n, -1.f));
  }
  const float* const* dp_src = to_device(std::vector<const float*>(d_src.begin(), d_src.end()));
  float* const* dp_dst = to_device(d_dst);
  int64_t* d_pos = to_device(std::vector<int64_t>{0});
  int64_t* d_tokens = to_device(std::vector<int64_t>(rows, 1));
  int64_t* d_rows = to_device(std::vector<int64_t>(rows, 0));
  float* d_bias = to_device(std::vector<float>(static_cast<size_t>(rows) * capacity, -1e10f));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  trt::launch_kv_append(dp_src, dp_dst, layers, rows, heads, head_dim, capacity, base, d_pos, stream);
  trt::launch_key_bias_update(d_bias, d_tokens, d_pos, d_rows, rows, capacity, base, false, true, stream);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int s = 0; s < steps; ++s) CHECK_CUDA(cudaGraphLaunch(exec, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_EQ(to_host(d_pos, 1)[0], int64_t{steps});
  const auto bias = to_host(d_bias, static_cast<size_t>(rows) * capacity);
  const auto cache = to_host(d_dst[3], cache_n);  // layer 1 value
  int64_t wrong = 0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < capacity; ++c) {
      const bool written = c >= base && c < base + steps;
      wrong += bias[r * capacity + c] != (written ? 0.f : -1e10f);
      for (int h = 0; h < heads; ++h)
        for (int d = 0; d < head_dim; ++d) {
          const float v = cache[((static_cast<size_t>(r) * heads + h) * capacity + c) * head_dim + d];
          wrong += v != (written ? static_cast<float>(3 * 1000 + (r * heads + h) * head_dim + d) : -1.f);
        }
    }
  check_none_wrong(wrong, "graph replay: cache / bias values after " + std::to_string(steps) + " replays");
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  CHECK_CUDA(cudaStreamDestroy(stream));
}

void print_device() {
  static const bool once = [] {
    cudaDeviceProp prop{};
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    return true;
  }();
  (void)once;
}

}  // namespace

// demo GIT (3 layers, 8 heads x 32), official-bert GIT (6 x 12 x 64), T5-ish (8 x 8 x 64), beams and batches
TEST(cuda_kv_append) {
  print_device();
  Rng rng(1);
  test_kv_append(3, 1, 8, 32, 160, 64, 0, rng);
  test_kv_append(3, 8, 8, 32, 160, 64, 95, rng);
  test_kv_append(6, 4, 12, 64, 700, 577, 40, rng);
  test_kv_append(8, 5, 8, 64, 128, 0, 127, rng);
}

TEST(cuda_key_bias_update) {
  Rng rng(2);
  for (bool t5 : {false, true})
    for (bool after : {false, true}) {
      test_key_bias(1, 160, 64, 0, t5, after, rng);
      test_key_bias(7, 160, 64, 13, t5, after, rng);
      test_key_bias(300, 40, 8, 31, t5, after, rng);  // more rows than the 128 threads
    }
}

TEST(cuda_greedy_pick) {
  Rng rng(3);
  for (int vocab : {140, 30522, 32128}) {
    test_greedy(1, vocab, rng);
    test_greedy(37, vocab, rng);
  }
}

TEST(cuda_gather_rows) {
  Rng rng(4);
  test_gather(5, 1, rng);
  test_gather(8, 12 * 700 * 64, rng);
}

TEST(cuda_graph_replays_decode_steps) { test_graph_replay(5); }
