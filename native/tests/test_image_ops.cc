// cpu: patch embedding (im2col + GEMM) against a naive convolution; jax.image.resize port against jax's outputs.
#include <cmath>
#include <cstring>
#include <sstream>

#include "core/safetensors.h"
#include "core/thread_pool.h"
#include "cpu/patch_embed.h"
#include "cpu/resize.h"
#include "tests/test.h"

using namespace pixelllm;
using test::Rng;

TEST(patch_embed_matches_naive_conv) {
  Rng rng(21);
  struct P { int64_t b, h, w, cin, cout, k; };
  // SAM-like 16x16 patches on 48x32, EVA02-like 14x14 on 44x30 (remainders dropped like a VALID conv).
  for (const P& p : {P{2, 48, 32, 3, 8, 16}, P{1, 44, 30, 3, 5, 14}, P{1, 4, 4, 2, 3, 1}}) {
    auto x = rng.vec(p.b * p.h * p.w * p.cin, 0, 255);
    auto wt = rng.vec(p.cout * p.cin * p.k * p.k);  // torch (Cout, Cin, kh, kw)
    auto bias = rng.vec(p.cout);
    const cpu::PackedWeight packed = cpu::patch_embed_weight(wt.data(), p.cout, p.cin, p.k, p.k);
    const int64_t gh = p.h / p.k, gw = p.w / p.k;
    std::vector<float> scratch(cpu::patch_embed_scratch_size(p.b, p.h, p.w, p.cin, p.k, p.k));
    std::vector<float> out(p.b * gh * gw * p.cout);
    core::ThreadPool pool(2);
    cpu::patch_embed(x.data(), p.b, p.h, p.w, p.cin, packed, bias.data(), p.k, p.k, scratch.data(),
                     out.data(), &pool);
    std::vector<double> ref(out.size());
    for (int64_t b = 0; b < p.b; ++b)
      for (int64_t py = 0; py < gh; ++py)
        for (int64_t px = 0; px < gw; ++px)
          for (int64_t o = 0; o < p.cout; ++o) {
            double s = bias[o];
            for (int64_t c = 0; c < p.cin; ++c)
              for (int64_t y = 0; y < p.k; ++y)
                for (int64_t xx = 0; xx < p.k; ++xx)
                  s += double(x[((b * p.h + py * p.k + y) * p.w + px * p.k + xx) * p.cin + c]) *
                       wt[((o * p.cin + c) * p.k + y) * p.k + xx];
            ref[((b * gh + py) * gw + px) * p.cout + o] = s;
          }
    CHECK_REL_L2(out.data(), ref.data(), int64_t(out.size()), 1e-6);
  }
}

namespace {

std::shared_ptr<core::SafeTensors> resize_data() {
  static auto st = core::SafeTensors::open(std::string(PIXELLLM_TEST_DATA_DIR) + "/jax_resize.safetensors");
  return st;
}

cpu::ResizeMethod method_of(const std::string& m) {
  return (m == "linear" || m == "bilinear") ? cpu::ResizeMethod::Linear : cpu::ResizeMethod::Cubic;
}

}  // namespace

TEST(resize_weights_equal_reference_bit_for_bit) {
  auto st = resize_data();
  int checked = 0;
  for (const std::string& name : st->names()) {
    if (name.rfind("refw/", 0) != 0) continue;
    std::istringstream in(name.substr(5));
    std::string m, n, method, aa;
    std::getline(in, m, '_');
    std::getline(in, n, '_');
    std::getline(in, method, '_');
    std::getline(in, aa, '_');
    core::Tensor ref = st->get(name);
    auto w = cpu::resize_weights(std::stoll(m), std::stoll(n), method_of(method), aa == "1");
    CHECK_EQ(int64_t(w.size()), ref.numel());
    int64_t diff = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) diff += w[i] != ref.data()[i];
    if (diff) std::cerr << "  " << name << ": " << diff << " weights differ\n";
    CHECK_EQ(diff, 0);
    ++checked;
  }
  CHECK(checked >= 10);
  // jax's own matrices (float32 on XLA) to a few ulps
  for (const std::string& name : st->names()) {
    if (name.rfind("jaxw/", 0) != 0) continue;
    std::istringstream in(name.substr(5));
    std::string m, n, method;
    std::getline(in, m, '_');
    std::getline(in, n, '_');
    std::getline(in, method, '_');
    core::Tensor ref = st->get(name);
    auto w = cpu::resize_weights(std::stoll(m), std::stoll(n), method_of(method), true);
    double worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) worst = std::max(worst, double(std::fabs(w[i] - ref.data()[i])));
    CHECK(worst <= 1e-6);
  }
  auto id = cpu::resize_weights(5, 5, cpu::ResizeMethod::Cubic);
  CHECK_EQ(id[0], 1.f);
  CHECK_EQ(id[1], 0.f);
  CHECK_THROWS_CODE(cpu::resize_weights(0, 3, cpu::ResizeMethod::Linear), InvalidArgument, "positive");
}

TEST(resize_matches_jax_outputs) {
  auto st = resize_data();
  core::ThreadPool pool(2);
  int checked = 0;
  for (const auto& [key, value] : st->metadata()) {
    if (key.rfind("case/", 0) != 0) continue;
    const std::string method = value.substr(0, value.find(','));
    const bool aa = value.substr(value.find(',') + 1) == "1";
    core::Tensor x = st->get(key + "/x");
    core::Tensor y = st->get(key + "/y");
    // Map any rank to NHWC: (1, H, W, C) as is; lower ranks pad with trailing 1s to (H, W, C).
    core::Shape xs = x.shape(), ys = y.shape();
    int64_t b = 1;
    if (xs.size() == 4) {
      b = xs[0];
      xs.erase(xs.begin());
      ys.erase(ys.begin());
    }
    while (xs.size() < 3) {
      xs.push_back(1);
      ys.push_back(1);
    }
    CHECK_EQ(xs[2], ys[2]);
    std::vector<float> out(y.numel()), scratch(cpu::resize_scratch_size(b, ys[0], xs[1], xs[2]));
    cpu::resize_nhwc(x.data(), b, xs[0], xs[1], xs[2], out.data(), ys[0], ys[1], method_of(method), aa,
                     scratch.data(), &pool);
    double ymax = 0, worst = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      ymax = std::max(ymax, double(std::fabs(y.data()[i])));
      worst = std::max(worst, double(std::fabs(out[i] - y.data()[i])));
    }
    if (!(worst <= 5e-6 * std::max(1.0, ymax))) std::cerr << "  " << key << ": max abs error " << worst << "\n";
    CHECK(worst <= 5e-6 * std::max(1.0, ymax));
    CHECK_REL_L2(out.data(), y.data(), y.numel(), 1e-6);
    ++checked;
  }
  CHECK(checked >= 15);
}
