// cpu: gemm/linear, norms, activations, softmax against naive double-precision loops.
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>

#include "core/thread_pool.h"
#include "cpu/activations.h"
#include "cpu/gemm.h"
#include "cpu/gemv.h"
#include "cpu/packed_linear.h"
#include "cpu/norm.h"
#include "cpu/softmax.h"
#include "tests/test.h"

using namespace pixelllm;
using test::Rng;

TEST(gemm_sgemm_all_transposes) {
  Rng rng(1);
  const int64_t m = 13, n = 17, k = 29;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto a = rng.vec(m * k), b = rng.vec(k * n), c = rng.vec(m * n);
      std::vector<double> ref(m * n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p) {
            double av = ta ? a[p * m + i] : a[i * k + p];
            double bv = tb ? b[j * k + p] : b[p * n + j];
            s += av * bv;
          }
          ref[i * n + j] = 0.5 * s + 2.0 * c[i * n + j];
        }
      cpu::sgemm(ta, tb, m, n, k, 0.5f, a.data(), ta ? m : k, b.data(), tb ? k : n, 2.0f, c.data(), n);
      CHECK_REL_L2(c.data(), ref.data(), m * n, 1e-6);
    }
  // batched with a shared B (stride 0)
  auto a = rng.vec(3 * 4 * 5), b = rng.vec(5 * 6);
  std::vector<float> c(3 * 4 * 6);
  cpu::sgemm_batched(3, false, false, 4, 6, 5, 1.f, a.data(), 5, 20, b.data(), 6, 0, 0.f, c.data(), 6, 24);
  std::vector<double> ref(c.size());
  for (int64_t bi = 0; bi < 3; ++bi)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 6; ++j) {
        double s = 0;
        for (int64_t p = 0; p < 5; ++p) s += double(a[bi * 20 + i * 5 + p]) * b[p * 6 + j];
        ref[bi * 24 + i * 6 + j] = s;
      }
  CHECK_REL_L2(c.data(), ref.data(), int64_t(c.size()), 1e-6);
}

TEST(gemm_linear_torch_layout) {
  Rng rng(2);
  for (int64_t rows : {1, 3, 70}) {
    const int64_t in = 37, out = 21;
    auto x = rng.vec(rows * in), w = rng.vec(out * in), b = rng.vec(out), y0 = rng.vec(rows * out);
    std::vector<double> ref(rows * out), ref_acc(rows * out);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = b[o];
        for (int64_t i = 0; i < in; ++i) s += double(x[r * in + i]) * w[o * in + i];
        ref[r * out + o] = s;
        ref_acc[r * out + o] = s + y0[r * out + o];
      }
    std::vector<float> y(rows * out, std::numeric_limits<float>::quiet_NaN());  // must not leak through
    cpu::linear(x.data(), rows, in, w.data(), b.data(), out, y.data());
    CHECK_REL_L2(y.data(), ref.data(), rows * out, 1e-6);
    std::vector<float> acc = y0;
    cpu::linear(x.data(), rows, in, w.data(), b.data(), out, acc.data(), /*accumulate=*/true);
    CHECK_REL_L2(acc.data(), ref_acc.data(), rows * out, 1e-6);
    // no bias, strided rows
    std::vector<float> ys(rows * (out + 3), -7.f);
    cpu::linear(x.data(), rows, in, w.data(), nullptr, out, ys.data(), false, in, out + 3);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) CHECK_NEAR(ys[r * (out + 3) + o], ref[r * out + o] - b[o], 1e-4);
    CHECK_EQ(ys[out], -7.f);
  }
  cpu::blas_set_threads(2);
  CHECK(cpu::blas_threads() >= 1);
}

// The one-row GEMV (point head, encoders' single rows): every tail of its 64-wide main loop and 16-wide loop, and one-row linear layers large
// enough to be split over the gemm pool (>= 2 MiB of weight) give the same numbers as unsplit ones.
TEST(gemv_tails_and_split_linear) {
  Rng rng(3);
  for (int64_t in : {1, 15, 16, 17, 63, 64, 65, 100, 768}) {
    const int64_t out = 7;
    auto x = rng.vec(in), w = rng.vec(out * in), y = rng.vec(out);
    std::vector<double> ref(out);
    for (int64_t o = 0; o < out; ++o) {
      double s = y[o];
      for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * x[i];
      ref[o] = s;
    }
    cpu::gemv_accumulate(w.data(), in, out, x.data(), y.data());
    CHECK_REL_L2(y.data(), ref.data(), out, 1e-6);
  }
  const int64_t in = 300, out = 2000 + 5;  // 2.3 MiB: split; 5 rows past the last 16-row block
  auto x = rng.vec(in), w = rng.vec(out * in), b = rng.vec(out);
  std::vector<double> ref(out);
  for (int64_t o = 0; o < out; ++o) {
    double s = b[o];
    for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * x[i];
    ref[o] = s;
  }
  for (int threads : {1, 2, 3}) {
    cpu::blas_set_threads(threads);
    std::vector<float> y(out, std::numeric_limits<float>::quiet_NaN());
    cpu::linear(x.data(), 1, in, w.data(), b.data(), out, y.data());
    CHECK_REL_L2(y.data(), ref.data(), out, 1e-6);
  }
  // Several rows (the per-block GEMMs), strided in and out, accumulating into y.
  for (int64_t rows : {2, 3, 4, 5}) {
    const int64_t ldx = in + 7, ldy = out + 3;
    auto xs = rng.vec(rows * ldx), y0 = rng.vec(rows * ldy);
    std::vector<double> want(rows * out);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = double(y0[r * ldy + o]) + b[o];
        for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * xs[r * ldx + i];
        want[r * out + o] = s;
      }
    for (int threads : {1, 2}) {
      cpu::blas_set_threads(threads);
      std::vector<float> y = y0;
      cpu::linear(xs.data(), rows, in, w.data(), b.data(), out, y.data(), /*accumulate=*/true, ldx, ldy);
      std::vector<float> got(rows * out);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) got[r * out + o] = y[r * ldy + o];
      CHECK_REL_L2(got.data(), want.data(), rows * out, 1e-6);
      for (int64_t r = 0; r < rows; ++r) CHECK_EQ(y[r * ldy + out], y0[r * ldy + out]);  // padding untouched
    }
  }
  cpu::blas_set_threads(2);
}

// Packed-panel linear layers (the text decoders): every panel tail (out not a multiple of 16, odd panel counts),
// every row blocking (8 / 4 / 1 and their remainders), strides, bias / accumulate, split over the pool or not; and
// a row's result is bit-identical whatever rows run with it.
TEST(packed_linear_matches_and_rows_are_independent) {
  Rng rng(4);
  for (int64_t out : {1, 16, 37, 48, 70, 2005}) {
    const int64_t in = out == 2005 ? 300 : 29;  // 2005 x 300: 2.3 MiB, split over the pool
    auto w = rng.vec(out * in), b = rng.vec(out);
    const cpu::PackedWeight pw = cpu::PackedWeight::pack(w.data(), out, in);
    CHECK_EQ(pw.out(), out);
    CHECK_EQ(pw.panels(), (out + 15) / 16);
    for (int64_t rows : {1, 2, 3, 5, 8, 13, 17}) {
      const int64_t ldx = in + 3, ldy = out + 2;
      auto x = rng.vec(rows * ldx), y0 = rng.vec(rows * ldy);
      std::vector<double> want(rows * out);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
          double s = double(y0[r * ldy + o]) + b[o];
          for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * x[r * ldx + i];
          want[r * out + o] = s;
        }
      for (int threads : {1, 2}) {
        cpu::blas_set_threads(threads);
        std::vector<float> y = y0;
        cpu::linear(x.data(), rows, pw, b.data(), y.data(), /*accumulate=*/true, ldx, ldy);
        std::vector<float> got(rows * out);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) got[r * out + o] = y[r * ldy + o];
          CHECK_EQ(y[r * ldy + out], y0[r * ldy + out]);  // stride padding untouched
        }
        CHECK_REL_L2(got.data(), want.data(), rows * out, 1e-6);
        // Row r alone (no bias, not accumulating) equals its row of the batch minus y0 and bias, bit for bit.
        const int64_t r = rows - 1;
        std::vector<float> alone(out, std::numeric_limits<float>::quiet_NaN()), batch(rows * out);
        cpu::linear(x.data() + r * ldx, 1, pw, nullptr, alone.data());
        cpu::linear(x.data(), rows, pw, nullptr, batch.data(), false, ldx, 0);
        for (int64_t o = 0; o < out; ++o) CHECK_EQ(alone[o], batch[r * out + o]);
      }
    }
  }
  cpu::blas_set_threads(2);
}

// bfloat16 weights: rounded to nearest even at pack time, then the same float32 arithmetic in the same order, so a
// bf16-packed weight gives exactly what an f32-packed copy of the rounded weights gives (any rows, 1-2 threads).
TEST(packed_linear_bf16_is_the_f32_kernel_on_rounded_weights) {
  auto round_bf16 = [](float f) {  // independent reference: round half to even on the upper 16 bits
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const uint32_t lower = u & 0xffffu, upper = u >> 16;
    uint32_t r = upper + (lower > 0x8000u || (lower == 0x8000u && (upper & 1u)) ? 1u : 0u);
    r <<= 16;
    float out;
    std::memcpy(&out, &r, sizeof out);
    return out;
  };
  CHECK_EQ(round_bf16(1.0f), 1.0f);
  CHECK_EQ(round_bf16(1.0f + 1.0f / 256), 1.0f);              // a tie rounds to the even bfloat16 (1.0)
  CHECK_EQ(round_bf16(1.0f + 3.0f / 256), 1.0f + 4.0f / 256);  // a tie rounds to the even bfloat16 (1 + 2^-6)
  CHECK(cpu::weight_format("bf16") == cpu::WeightFormat::bf16 && cpu::weight_format("fp32") == cpu::WeightFormat::f32);
  CHECK_THROWS_CODE(cpu::weight_format("fp16"), InvalidArgument, "fp16");
  Rng rng(5);
  for (int64_t out : {1, 16, 37, 2005}) {
    const int64_t in = out == 2005 ? 600 : 29;  // 2005 x 600 bf16: 2.3 MiB, split over the pool
    auto w = rng.vec(out * in), b = rng.vec(out);
    w[0] = 1.0f + 1.0f / 256;                    // ties, both ways
    if (w.size() > 1) w[1] = -(1.0f + 3.0f / 256);
    std::vector<float> rounded(w.size());
    for (size_t i = 0; i < w.size(); ++i) rounded[i] = round_bf16(w[i]);
    const cpu::PackedWeight half = cpu::PackedWeight::pack(w.data(), out, in, cpu::WeightFormat::bf16);
    const cpu::PackedWeight full = cpu::PackedWeight::pack(rounded.data(), out, in);
    CHECK(half.format() == cpu::WeightFormat::bf16);
    CHECK_EQ(half.bytes() * 2, full.bytes());
    for (int64_t rows : {1, 3, 8, 13}) {
      auto x = rng.vec(rows * in);
      for (int threads : {1, 2}) {
        cpu::blas_set_threads(threads);
        std::vector<float> a(rows * out), c(rows * out);
        cpu::linear(x.data(), rows, half, b.data(), a.data());
        cpu::linear(x.data(), rows, full, b.data(), c.data());
        for (size_t i = 0; i < a.size(); ++i) CHECK_EQ(a[i], c[i]);
      }
    }
  }
  cpu::blas_set_threads(2);
}

// bfloat16 compute (WeightFormat::bf16_dot, AVX512-BF16): weights and inputs rounded to bfloat16 (nearest even),
// products exact, float32 accumulation: within float32 summation error of a double reference on the ROUNDED values;
// odd input widths, tails, row blocks, strides, 1-2 threads. Without AVX512-BF16 the product is refused.
TEST(packed_linear_bf16_dot_is_exact_products_of_rounded_values) {
  auto round_bf16 = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float out;
    std::memcpy(&out, &u, sizeof out);
    return out;
  };
  Rng rng(6);
  for (int64_t out : {1, 16, 37, 300}) {
    for (int64_t in : {1, 29, 64, 95}) {
      auto w = rng.vec(out * in), b = rng.vec(out);
      const cpu::PackedWeight pw = cpu::PackedWeight::pack(w.data(), out, in, cpu::WeightFormat::bf16_dot);
      CHECK_EQ(pw.bytes(), pw.panels() * ((in + 1) / 2) * 16 * 4);
      for (int64_t rows : {1, 5, 8, 13}) {
        const int64_t ldx = in + 3;
        auto x = rng.vec(rows * ldx);
        if (!cpu::bf16_dot_supported()) {
          std::vector<float> y(rows * out);
          CHECK_THROWS_CODE(cpu::linear(x.data(), rows, pw, b.data(), y.data(), false, ldx), BackendUnavailable,
                            "AVX512-BF16");
          continue;
        }
        std::vector<double> want(rows * out), plain(rows * out);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < out; ++o) {
            double s = b[o], t = b[o];
            for (int64_t i = 0; i < in; ++i) {
              s += double(round_bf16(w[o * in + i])) * double(round_bf16(x[r * ldx + i]));
              t += double(w[o * in + i]) * double(x[r * ldx + i]);
            }
            want[r * out + o] = s;
            plain[r * out + o] = t;
          }
        for (int threads : {1, 2}) {
          cpu::blas_set_threads(threads);
          std::vector<float> y(rows * out);
          cpu::linear(x.data(), rows, pw, b.data(), y.data(), false, ldx);
          CHECK_REL_L2(y.data(), want.data(), rows * out, 1e-5);
          CHECK_REL_L2(y.data(), plain.data(), rows * out, 2e-2);  // the rounding itself: ~2^-8 per product
        }
      }
    }
  }
  if (!cpu::bf16_dot_supported()) std::cout << "  (no AVX512-BF16 here: only the refusal was checked)\n";
  cpu::blas_set_threads(2);
}

TEST(layer_norm_and_fused_residual) {
  Rng rng(3);
  const int64_t rows = 37, dim = 75;
  auto x = rng.vec(rows * dim, -3, 5), g = rng.vec(dim), b = rng.vec(dim), d = rng.vec(rows * dim);
  const float eps = 1e-6f;
  auto ref_ln = [&](const std::vector<double>& in) {
    std::vector<double> out(in.size());
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < dim; ++i) mean += in[r * dim + i];
      mean /= dim;
      for (int64_t i = 0; i < dim; ++i) var += (in[r * dim + i] - mean) * (in[r * dim + i] - mean);
      var /= dim;
      for (int64_t i = 0; i < dim; ++i)
        out[r * dim + i] = (in[r * dim + i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
    }
    return out;
  };
  core::ThreadPool pool(2);
  std::vector<double> xd(x.begin(), x.end());
  std::vector<float> y(x.size());
  cpu::layer_norm(x.data(), rows, dim, g.data(), b.data(), eps, y.data(), &pool);
  CHECK_REL_L2(y.data(), ref_ln(xd).data(), rows * dim, 1e-6);
  std::vector<float> inplace = x;
  cpu::layer_norm(inplace.data(), rows, dim, g.data(), b.data(), eps, inplace.data());
  CHECK_REL_L2(inplace.data(), y.data(), rows * dim, 0.0);
  // fused: residual += delta; y = LN(residual)
  std::vector<float> res = x;
  cpu::add_layer_norm(res.data(), d.data(), rows, dim, g.data(), b.data(), eps, y.data(), &pool);
  std::vector<double> sum(x.size());
  for (size_t i = 0; i < x.size(); ++i) sum[i] = double(x[i]) + d[i];
  CHECK_REL_L2(res.data(), sum.data(), rows * dim, 1e-7);
  CHECK_REL_L2(y.data(), ref_ln(sum).data(), rows * dim, 1e-6);
  // RMS norm (T5)
  cpu::rms_norm(x.data(), rows, dim, g.data(), eps, y.data());
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < dim; ++i) ms += xd[r * dim + i] * xd[r * dim + i];
    ms /= dim;
    for (int64_t i = 0; i < dim; ++i) ref[r * dim + i] = xd[r * dim + i] / std::sqrt(ms + eps) * g[i];
  }
  CHECK_REL_L2(y.data(), ref.data(), rows * dim, 1e-6);
}

TEST(activations_match_formulas) {
  Rng rng(4);
  const int64_t n = 40000;  // > one parallel grain
  auto x = rng.vec(n, -8, 8);
  core::ThreadPool pool(3);
  auto run = [&](void (*f)(float*, int64_t, core::ThreadPool*), double (*ref)(double), double tol) {
    std::vector<float> y = x;
    f(y.data(), n, &pool);
    std::vector<double> r(n);
    for (int64_t i = 0; i < n; ++i) r[i] = ref(x[i]);
    CHECK_REL_L2(y.data(), r.data(), n, tol);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(y[i] - r[i]));
    CHECK(worst < 1e-5);
  };
  run(cpu::gelu, [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, 1e-6);
  run(cpu::gelu_tanh,
      [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }, 1e-6);
  run(cpu::silu, [](double v) { return v / (1 + std::exp(-v)); }, 1e-6);
  run(cpu::relu, [](double v) { return v > 0 ? v : 0.0; }, 0.0);
  // exact vs tanh gelu differ (so the two are not mixed up)
  std::vector<float> a = {1.5f}, b = {1.5f};
  cpu::gelu(a.data(), 1);
  cpu::gelu_tanh(b.data(), 1);
  CHECK(std::fabs(a[0] - b[0]) > 1e-5);
  auto up = rng.vec(n);
  std::vector<float> out(n);
  cpu::silu_mul(x.data(), up.data(), out.data(), n, &pool);
  std::vector<double> r(n);
  for (int64_t i = 0; i < n; ++i) r[i] = x[i] / (1 + std::exp(-double(x[i]))) * up[i];
  CHECK_REL_L2(out.data(), r.data(), n, 1e-6);
  cpu::gelu_tanh_mul(x.data(), up.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    r[i] = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))) * up[i];
  }
  CHECK_REL_L2(out.data(), r.data(), n, 1e-6);
}

TEST(softmax_rows) {
  Rng rng(5);
  const int64_t rows = 9, cols = 300;
  auto x = rng.vec(rows * cols, -50, 50);
  x[cols * 2 + 5] = 1e30f;  // huge value: max subtraction keeps it finite
  std::vector<float> y = x;
  cpu::softmax(y.data(), rows, cols, 0.5f);
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < cols; ++i) m = std::max(m, 0.5 * x[r * cols + i]);
    for (int64_t i = 0; i < cols; ++i) s += std::exp(0.5 * x[r * cols + i] - m);
    for (int64_t i = 0; i < cols; ++i) ref[r * cols + i] = std::exp(0.5 * x[r * cols + i] - m) / s;
  }
  CHECK_REL_L2(y.data(), ref.data(), rows * cols, 1e-6);
  CHECK_NEAR(y[cols * 2 + 5], 1.0, 1e-6);
  // -inf entries get 0, an all -inf row becomes zeros (no NaN)
  std::vector<float> z = {0.f, -INFINITY, 0.f, -INFINITY, -INFINITY, -INFINITY};
  cpu::softmax(z.data(), 2, 3);
  CHECK_NEAR(z[0], 0.5, 1e-7);
  CHECK_EQ(z[1], 0.f);
  CHECK_EQ(z[3], 0.f);
  CHECK_EQ(z[5], 0.f);
  std::vector<float> ls(cols);
  cpu::log_softmax(x.data(), cols, ls.data());
  double m = -INFINITY, s = 0;
  for (int64_t i = 0; i < cols; ++i) m = std::max(m, double(x[i]));
  for (int64_t i = 0; i < cols; ++i) s += std::exp(x[i] - m);
  for (int64_t i = 0; i < cols; i += 37) CHECK_NEAR(ls[i], x[i] - m - std::log(s), 1e-4);
}
