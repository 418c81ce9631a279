// Benchmark server for the native CPU runtime: `pixelllm_bench_native MODEL_DIR THREADS` reads one command per
// line on stdin and answers one JSON object per line on stdout, so that bench/run.mjs can alternate it with the
// onnxruntime and PyTorch peers inside one command (each peer stays loaded; runs interleave).
//   info                 sizes + the analytic matmul FLOPs of the image side
//   encode               image side (normalise, SAM, EVA02, fusion) of a synthetic image: ms (+ parts)
//   steps N              prefill + N greedy steps on cached visual tokens: per-step ms (step i = position i)
//   adapter N            the prompt adapter's visual tokens of the whole-image box on the cached features, N
//                        times: ms per call
//   caption N            end to end: encode + prompt adapter + prefill + N greedy steps (+ point head each)
//   concurrent K N       K threads, each a caption of N tokens on the cached features: wall ms, tokens/s
//   rows K N             K captions of N tokens advanced together in one multi-row decoder state (the cost
//                        model of in-flight batching, see BenchModel::caption_rows): wall ms, tokens/s
//   gemm                 OpenBLAS sgemm GFLOP/s on encoder-like shapes with the same thread count (the peak)
//   attn                 cpu::attention vs per-head BLAS attention on the encoder shapes (GFLOP/s)
//   gemmsplit            cpu::linear (OpenBLAS threads) vs weight rows split over the pool (OpenBLAS 1 thread)
//   roofline             this machine's limits for the bounds in bench/README.md: FMA GFLOP/s with every
//                        thread (register-only loop), memory-read GB/s over 512 MB with 1 and THREADS threads
//                        (a plain streaming sum, and our GEMV), and the weight bytes one decode step reads
//   rss                  peak resident set size (MB)
//   quit
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_model.h"
#include "core/error.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/gemv.h"
#include "cpu/packed_linear.h"
#include "cpu/simd.h"
#include "cpu/softmax.h"

using namespace pixelllm;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

// VmHWM of /proc/self/status: the high-water mark of this process image. (getrusage's ru_maxrss is carried
// across execve on Linux, so a child spawned by a large Node process would report the parent's RSS.)
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

// Best GFLOP/s of a few sgemm shapes of the image encoders (SAM MLP / qkv, EVA02 SwiGLU) and a square one.
std::string gemm_peak() {
  struct Shape { int64_t m, n, k; };
  const Shape shapes[] = {{784, 3840, 1280}, {576, 5120, 1280}, {730, 5460, 1024}, {1536, 1536, 1536}};
  std::ostringstream os;
  double best = 0;
  os << "{\"shapes\":[";
  bool first = true;
  for (const Shape& s : shapes) {
    core::AlignedVector<float> a(size_t(s.m * s.k), 0.5f), b(size_t(s.n * s.k), 0.25f), c(size_t(s.m * s.n));
    cpu::sgemm(false, true, s.m, s.n, s.k, 1.f, a.data(), s.k, b.data(), s.k, 0.f, c.data(), s.n);  // warm
    double gf = 0;
    for (int r = 0; r < 3; ++r) {
      auto t0 = Clock::now();
      cpu::sgemm(false, true, s.m, s.n, s.k, 1.f, a.data(), s.k, b.data(), s.k, 0.f, c.data(), s.n);
      gf = std::max(gf, 2.0 * s.m * s.n * s.k / (ms_since(t0) * 1e6));
    }
    best = std::max(best, gf);
    os << (first ? "" : ",") << "{\"m\":" << s.m << ",\"n\":" << s.n << ",\"k\":" << s.k
       << ",\"gflops\":" << num(gf) << "}";
    first = false;
  }
  os << "],\"peak_gflops\":" << num(best) << "}";
  return os.str();
}

// One linear layer y (rows, out) = x (rows, in) @ W^T + b: OpenBLAS (cpu::linear on the torch-layout weight), the
// packed-panel kernel (cpu/packed_linear.h, weight packed once) and, where the CPU has AVX512-BF16, its bfloat16
// compute format (bf16_dot). Best of `reps` each, alternated.
std::string linear_ab(int64_t rows, int64_t in, int64_t out, int reps) {
  core::AlignedVector<float> x(size_t(rows * in)), w(size_t(out * in)), b(size_t(out), 0.1f), y(size_t(rows * out));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 13) * 0.01f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 7) * 0.01f;
  const cpu::PackedWeight pw = cpu::PackedWeight::pack(w.data(), out, in);
  const bool dot = cpu::bf16_dot_supported();
  const cpu::PackedWeight pd = dot ? cpu::PackedWeight::pack(w.data(), out, in, cpu::WeightFormat::bf16_dot) : pw;
  double blas = 1e30, packed = 1e30, bf16 = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    cpu::linear(x.data(), rows, in, w.data(), b.data(), out, y.data());
    blas = std::min(blas, ms_since(t0));
    t0 = Clock::now();
    cpu::linear(x.data(), rows, pw, b.data(), y.data());
    packed = std::min(packed, ms_since(t0));
    if (dot) {
      t0 = Clock::now();
      cpu::linear(x.data(), rows, pd, b.data(), y.data());
      bf16 = std::min(bf16, ms_since(t0));
    }
  }
  const double gf = 2.0 * rows * in * out / 1e6;
  std::ostringstream os;
  os << "{\"rows\":" << rows << ",\"in\":" << in << ",\"out\":" << out << ",\"blas_gflops\":" << num(gf / blas)
     << ",\"packed_gflops\":" << num(gf / packed);
  if (dot) os << ",\"bf16_dot_gflops\":" << num(gf / bf16);
  os << "}";
  return os.str();
}

// Register-only FMA loop (12 independent 16-lane accumulators): the compute ceiling of one thread.
PIXELLLM_SIMD_CLONES double fma_loop(int64_t iters) {
  using cpu::simd::vf;
  const vf m = vf{} + 0.999999f, a = vf{} + 1e-7f;
  vf a0 = m * 0.1f, a1 = m * 0.2f, a2 = m * 0.3f, a3 = m * 0.4f, a4 = m * 0.5f, a5 = m * 0.6f, a6 = m * 0.7f,
     a7 = m * 0.8f, a8 = m * 0.9f, a9 = m * 1.1f, a10 = m * 1.2f, a11 = m * 1.3f;
  for (int64_t i = 0; i < iters; ++i) {
    a0 = a0 * m + a; a1 = a1 * m + a; a2 = a2 * m + a; a3 = a3 * m + a; a4 = a4 * m + a; a5 = a5 * m + a;
    a6 = a6 * m + a; a7 = a7 * m + a; a8 = a8 * m + a; a9 = a9 * m + a; a10 = a10 * m + a; a11 = a11 * m + a;
  }
  const vf s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
  return cpu::simd::hsum(s);
}

// Sum of n floats (n a multiple of 64), four 16-lane accumulators: a pure streaming read.
PIXELLLM_SIMD_CLONES float stream_sum(const float* p, int64_t n) {
  using cpu::simd::vf;
  vf a0 = vf{}, a1 = vf{}, a2 = vf{}, a3 = vf{};
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    vf v0, v1, v2, v3;
    cpu::simd::load(v0, p + i);
    cpu::simd::load(v1, p + i + 16);
    cpu::simd::load(v2, p + i + 32);
    cpu::simd::load(v3, p + i + 48);
    a0 += v0; a1 += v1; a2 += v2; a3 += v3;
  }
  const vf s = (a0 + a1) + (a2 + a3);
  return cpu::simd::hsum(s);
}

// Runs fn(t) on `threads` threads at once (t = 0..threads-1); returns the wall time in ms.
template <class F>
double on_threads(int threads, F&& fn) {
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back([&, t] { fn(t); });
  fn(0);
  for (auto& t : ts) t.join();
  return ms_since(t0);
}

std::string roofline(const bench::BenchModel& m, int threads) {
  std::ostringstream os;
  // FMA peak: 16 lanes x 2 flops x 12 chains per iteration.
  const int64_t iters = 20'000'000;
  double best_ms = 1e30;
  volatile double sink = 0;
  for (int r = 0; r < 3; ++r) best_ms = std::min(best_ms, on_threads(threads, [&](int) { sink = sink + fma_loop(iters); }));
  const double fma_gflops = threads * 16.0 * 2 * 12 * double(iters) / (best_ms * 1e6);
  // Memory read over a 512 MB buffer (far above the caches), 1 and `threads` threads on disjoint halves: a plain
  // streaming sum (the ceiling any weight-streaming kernel can reach) and cpu::gemv_accumulate (ours, y += W x).
  const int64_t in = 768, out = (int64_t(512) << 20) / (4 * in);
  core::AlignedVector<float> w(size_t(out * in), 0.001f), x(size_t(in), 1.f), y{};
  y.resize(size_t(out));
  auto read_gbs = [&](int n, bool gemv) {
    double best = 1e30;
    for (int r = 0; r < 3; ++r)
      best = std::min(best, on_threads(n, [&](int t) {
        // Interleaved 16-row chunks (thread t takes chunks t, t + n, ...), as the step splits its products.
        for (int64_t o0 = 16 * t; o0 < out; o0 += 16 * n) {
          const int64_t o1 = std::min(out, o0 + 16);
          if (gemv)
            cpu::gemv_accumulate(w.data() + o0 * in, in, o1 - o0, x.data(), y.data() + o0);
          else
            y[size_t(o0)] += stream_sum(w.data() + o0 * in, (o1 - o0) * in);
        }
      }));
    return 4.0 * double(out) * in / (best * 1e6);
  };
  const double gbs1 = read_gbs(1, false), gbsn = read_gbs(threads, false);
  const double gemv1 = read_gbs(1, true), gemvn = read_gbs(threads, true);
  os << "{\"fma_peak_gflops\":" << num(fma_gflops) << ",\"read_gbs_1\":" << num(gbs1) << ",\"read_gbs_n\":"
     << num(gbsn) << ",\"gemv_gbs_1\":" << num(gemv1) << ",\"gemv_gbs_n\":" << num(gemvn)
     << ",\"step_weight_bytes\":" << num(m.step_weight_bytes()) << "}";
  return os.str();
}

// cpu::attention vs per-head BLAS (S = Q K^T, softmax, O = S V) on an encoder shape: GFLOP/s of each.
std::string attention_probe(core::ThreadPool& pool, int64_t T, int64_t H, int64_t hd, int reps) {
  const int64_t W = H * hd;
  core::AlignedVector<float> qkv(size_t(T * 3 * W)), o(size_t(T * W)), s(size_t(T * T));
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = float((i * 2654435761u) % 1000) / 1000.f - 0.5f;
  const double flops = 4.0 * T * T * W;
  cpu::AttentionArgs a;
  a.q_len = a.kv_len = T;
  a.heads = H;
  a.head_dim = hd;
  a.q = qkv.data(); a.k = qkv.data() + W; a.v = qkv.data() + 2 * W;
  a.ldq = a.ldk = a.ldv = 3 * W;
  a.out = o.data();
  a.ldo = W;
  a.scale = 1.f / std::sqrt(float(hd));
  double best_kernel = 1e30, best_blas = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    cpu::attention(a, &pool);
    best_kernel = std::min(best_kernel, ms_since(t0));
    t0 = Clock::now();
    for (int64_t h = 0; h < H; ++h) {
      cpu::sgemm(false, true, T, T, hd, a.scale, a.q + h * hd, 3 * W, a.k + h * hd, 3 * W, 0.f, s.data(), T);
      cpu::softmax(s.data(), T, T, 1.0f, &pool);
      cpu::sgemm(false, false, T, hd, T, 1.f, s.data(), T, a.v + h * hd, 3 * W, 0.f, o.data() + h * hd, W);
    }
    best_blas = std::min(best_blas, ms_since(t0));
  }
  std::ostringstream os;
  os << "{\"T\":" << T << ",\"heads\":" << H << ",\"head_dim\":" << hd << ",\"kernel_ms\":" << num(best_kernel)
     << ",\"kernel_gflops\":" << num(flops / (best_kernel * 1e6)) << ",\"blas_ms\":" << num(best_blas)
     << ",\"blas_gflops\":" << num(flops / (best_blas * 1e6)) << "}";
  return os.str();
}

// y = x W^T with the weight's output rows split over the pool's threads, each slice one single-threaded OpenBLAS
// call (no OpenBLAS worker threads at all), vs cpu::linear with OpenBLAS threads = pool size.
void linear_split(core::ThreadPool& pool, const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                  float* y) {
  const int64_t parts = pool.size();
  const int64_t chunk = ((out + parts - 1) / parts + 15) / 16 * 16;
  pool.parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t o0 = p * chunk, o1 = std::min(out, o0 + chunk);
      if (o0 >= o1) continue;
      cpu::sgemm(false, true, rows, o1 - o0, in, 1.f, x, in, w + o0 * in, in, 0.f, y + o0, out);
    }
  });
}

std::string gemm_split_probe(core::ThreadPool& pool, int reps) {
  struct Shape { int64_t rows, in, out; };
  const Shape shapes[] = {{576, 1280, 3840}, {576, 1280, 5120}, {576, 5120, 1280}, {730, 1024, 5460},
                          {1, 768, 2304}, {1, 768, 3072}, {1, 3072, 768}, {1, 768, 30522}};
  std::ostringstream os;
  os << "[";
  bool first = true;
  const int threads = pool.size();
  for (const Shape& s : shapes) {
    core::AlignedVector<float> x(size_t(s.rows * s.in), 0.5f), w(size_t(s.out * s.in), 0.25f), y(size_t(s.rows * s.out));
    std::vector<double> a, b;
    for (int r = 0; r < reps; ++r) {
      cpu::blas_set_threads(threads);
      auto t0 = Clock::now();
      cpu::linear(x.data(), s.rows, s.in, w.data(), nullptr, s.out, y.data());
      a.push_back(ms_since(t0));
      cpu::blas_set_threads(1);
      t0 = Clock::now();
      linear_split(pool, x.data(), s.rows, s.in, w.data(), s.out, y.data());
      b.push_back(ms_since(t0));
    }
    cpu::blas_set_threads(threads);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    os << (first ? "" : ",") << "{\"rows\":" << s.rows << ",\"in\":" << s.in << ",\"out\":" << s.out
       << ",\"blas_threads_ms\":" << num(a[a.size() / 2]) << ",\"pool_split_ms\":" << num(b[b.size() / 2]) << "}";
    first = false;
  }
  os << "]";
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR THREADS [fp32|bf16]\n  bf16: decoder weights bf16 + encoders in bf16 "
                 "arithmetic (decoderWeights / encoderPrecision 'bf16')\n", argv[0]);
    return 2;
  }
  try {
    auto t_load = Clock::now();
    const cpu::WeightFormat reduced = cpu::weight_format(argc > 3 ? argv[3] : "fp32");
    bench::BenchModel m(argv[1], std::atoi(argv[2]), reduced,
                        reduced == cpu::WeightFormat::bf16 ? cpu::WeightFormat::bf16_dot : cpu::WeightFormat::f32);
    const double load_ms = ms_since(t_load);
    const std::vector<uint8_t> image = m.test_image();
    std::vector<float> features, visual;
    auto ensure_visual = [&] {
      if (visual.empty()) {
        features = m.encode(image.data());
        visual = m.visual_tokens(features.data());
      }
    };
    std::cout << "{\"ready\":true,\"load_ms\":" << num(load_ms) << "}" << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd;
      in >> cmd;
      std::ostringstream out;
      if (cmd == "quit") break;
      if (cmd == "info") {
        out << "{\"image_size\":" << m.image_size() << ",\"n_visual\":" << m.n_visual()
            << ",\"visual_dim\":" << m.visual_dim() << ",\"threads\":" << m.pool().size()
            << ",\"blas_threads\":" << cpu::blas_threads() << ",\"max_positions\":" << m.max_positions()
            << ",\"encoder_gflop\":" << num(m.encoder_flops() / 1e9)
            << ",\"step_weight_bytes\":" << num(m.step_weight_bytes()) << "}";
      } else if (cmd == "encode") {
        bench::Timing t;
        auto t0 = Clock::now();
        features = m.encode(image.data(), &t);
        const double ms = ms_since(t0);
        out << "{\"ms\":" << num(ms) << ",\"sam_ms\":" << num(t.sam) << ",\"eva_ms\":" << num(t.eva)
            << ",\"fusion_ms\":" << num(t.fusion) << ",\"normalize_ms\":" << num(t.normalize) << "}";
      } else if (cmd == "steps") {
        int n = 0;
        in >> n;
        ensure_visual();
        std::vector<double> step_ms;
        m.caption(visual.data(), n, &step_ms);
        out << "{\"step_ms\":[";
        for (size_t i = 0; i < step_ms.size(); ++i) out << (i ? "," : "") << num(step_ms[i]);
        out << "]}";
      } else if (cmd == "adapter") {
        int n = 0;
        in >> n;
        PIXELLLM_CHECK(n > 0 && n <= 100000, InvalidArgument, "adapter N (1..100000)");
        ensure_visual();
        auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) visual = m.visual_tokens(features.data());
        out << "{\"ms\":" << num(ms_since(t0) / n) << "}";
      } else if (cmd == "caption") {
        int n = 0;
        in >> n;
        auto t0 = Clock::now();
        std::vector<float> f = m.encode(image.data());
        const double enc = ms_since(t0);
        std::vector<float> v = m.visual_tokens(f.data());
        const double ad = ms_since(t0) - enc;
        std::vector<int32_t> toks = m.caption(v.data(), n);
        const double ms = ms_since(t0);
        out << "{\"ms\":" << num(ms) << ",\"encode_ms\":" << num(enc) << ",\"adapter_ms\":" << num(ad)
            << ",\"decode_ms\":" << num(ms - enc - ad) << ",\"tokens\":" << toks.size() << "}";
      } else if (cmd == "concurrent") {
        int k = 1, n = 0;
        in >> k >> n;
        ensure_visual();
        auto t0 = Clock::now();
        std::vector<std::thread> threads;
        std::vector<std::string> errors(static_cast<size_t>(k));
        for (int i = 0; i < k; ++i)
          threads.emplace_back([&, i] {
            try {
              m.caption(visual.data(), n);
            } catch (const std::exception& e) {
              errors[size_t(i)] = e.what();
            }
          });
        for (auto& t : threads) t.join();
        const double ms = ms_since(t0);
        for (auto& e : errors)
          if (!e.empty()) throw std::runtime_error(e);
        out << "{\"ms\":" << num(ms) << ",\"tokens_per_s\":" << num(1000.0 * k * n / ms) << "}";
      } else if (cmd == "rows") {
        int k = 1, n = 0;
        in >> k >> n;
        ensure_visual();
        const double ms = m.caption_rows(visual.data(), k, n);
        out << "{\"ms\":" << num(ms) << ",\"tokens_per_s\":" << num(1000.0 * k * n / ms) << "}";
      } else if (cmd == "attn") {
        out << "{\"eva02\":" << attention_probe(m.pool(), 730, 16, 64, 3)
            << ",\"sam_window\":" << attention_probe(m.pool(), 196, 16, 80, 3)
            << ",\"sam_global\":" << attention_probe(m.pool(), 576, 16, 80, 3) << "}";
      } else if (cmd == "gemmsplit") {
        out << "{\"shapes\":" << gemm_split_probe(m.pool(), 7) << "}";
      } else if (cmd == "linear") {
        int64_t rows = 0, in_ = 0, out_ = 0;
        in >> rows >> in_ >> out_;
        PIXELLLM_CHECK(rows > 0 && in_ > 0 && out_ > 0, InvalidArgument, "linear ROWS IN OUT");
        out << linear_ab(rows, in_, out_, 20);
      } else if (cmd == "gemm") {
        out << gemm_peak();
      } else if (cmd == "roofline") {
        out << roofline(m, m.pool().size());
      } else if (cmd == "rss") {
        out << "{\"peak_rss_mb\":" << num(peak_rss_mb()) << "}";
      } else {
        out << "{\"error\":\"unknown command '" << cmd << "'\"}";
      }
      std::cout << out.str() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cout << "{\"error\":" << "\"" << e.what() << "\"}" << std::endl;
    return 1;
  }
  return 0;
}
