// core: error codes, Tensor, dtype conversion, ThreadPool.
#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "tests/test.h"

using namespace pixelllm::core;

TEST(error_code_names_are_the_contract) {
  const char* expected[] = {"INVALID_ARGUMENT", "INVALID_IMAGE", "INVALID_BOX", "INVALID_TEXT", "MODEL_NOT_FOUND",
                            "MODEL_FORMAT", "CONFIG_MISMATCH", "TOKENIZER_MISMATCH", "BACKEND_UNAVAILABLE",
                            "ENGINE_MISMATCH", "OUT_OF_MEMORY", "LIMIT_EXCEEDED", "ABORTED", "DISPOSED", "INTERNAL"};
  for (int i = 0; i <= static_cast<int>(ErrorCode::Internal); ++i)
    CHECK_EQ(std::string(error_code_name(static_cast<ErrorCode>(i))), std::string(expected[i]));
  try {
    fail(ErrorCode::InvalidBox, "box x0 > x1");
  } catch (const std::runtime_error& e) {  // Error is a std::runtime_error
    const Error* err = dynamic_cast<const Error*>(&e);
    CHECK(err != nullptr);
    CHECK(err && err->code() == ErrorCode::InvalidBox);
    CHECK_EQ(std::string(e.what()), std::string("box x0 > x1"));
  }
}

TEST(tensor_owning_aligned_and_views) {
  Tensor t = Tensor::zeros({2, 3, 5});
  CHECK(t.owns());
  CHECK(t.aligned());
  CHECK_EQ(t.numel(), 30);
  CHECK_EQ(t.strides()[0], 15);
  CHECK_EQ(t.strides()[1], 5);
  CHECK_EQ(t.strides()[2], 1);
  CHECK_EQ(t.dim(-1), 5);
  for (int64_t i = 0; i < t.numel(); ++i) CHECK_EQ(t.data()[i], 0.f);
  t.at(1, 2, 4) = 7.f;
  CHECK_EQ(t.data()[29], 7.f);
  Tensor r = t.reshape({6, -1});
  CHECK_EQ(r.dim(1), 5);
  CHECK(r.data() == t.data());  // shares the buffer
  Tensor c = t.clone();
  c.at(0, 0, 0) = 1.f;
  CHECK_EQ(t.at(0, 0, 0), 0.f);
  float buf[6] = {1, 2, 3, 4, 5, 6};
  Tensor v = Tensor::view(buf, {2, 3});
  CHECK(!v.owns());
  CHECK_EQ(v.at(1, 0), 4.f);
  CHECK_THROWS_CODE(t.reshape({7, -1}), InvalidArgument, "reshape");
  CHECK_THROWS_CODE(t.dim(3), InvalidArgument, "dim 3");
  CHECK_THROWS_CODE(Tensor::empty({-1, 2}), LimitExceeded, "negative");
  CHECK_THROWS_CODE(Tensor::empty({1 << 20, 1 << 20, 1 << 20}), LimitExceeded, "too large");
  Tensor e = Tensor::empty({0, 4});
  CHECK_EQ(e.numel(), 0);
#ifndef NDEBUG
  CHECK_THROWS_CODE(t.at(2, 0, 0), InvalidArgument, "out of range");
  CHECK_THROWS_CODE(t.at(0, 0), InvalidArgument, "indices");
#endif
}

TEST(dtype_conversions) {
  CHECK_EQ(f16_to_f32(0x3c00), 1.0f);
  CHECK_EQ(f16_to_f32(0xc000), -2.0f);
  CHECK_EQ(f16_to_f32(0x7bff), 65504.0f);
  CHECK_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  CHECK(std::isinf(f16_to_f32(0x7c00)));
  CHECK(std::isnan(f16_to_f32(0x7e00)));
  CHECK(std::signbit(f16_to_f32(0x8000)));
  CHECK_EQ(bf16_to_f32(0x3f80), 1.0f);
  CHECK_EQ(bf16_to_f32(0xc0a0), -5.0f);
  // Every finite half round-trips through float32 exactly.
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    if (f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))) != h) ++bad;
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(f32_to_f16(65520.0f), 0x7c00);          // rounds to inf
  CHECK_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  CHECK_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie to even
  CHECK_EQ(f32_to_bf16(3.0f), 0x4040);
  uint16_t raw[3] = {0x3c00, 0x4000, 0xbc00};
  unsigned char unaligned[7];
  std::memcpy(unaligned + 1, raw, 6);
  float out[3];
  convert_to_f32(DType::F16, unaligned + 1, out, 3);
  CHECK_EQ(out[0], 1.f);
  CHECK_EQ(out[1], 2.f);
  CHECK_EQ(out[2], -1.f);
  CHECK(dtype_from_name("BF16") == DType::BF16);
  CHECK(!dtype_from_name("F64"));
  CHECK_EQ(dtype_size(DType::F32), size_t(4));
}

TEST(thread_pool_covers_range_and_propagates_errors) {
  CHECK(default_thread_count() >= 1 && default_thread_count() <= 16);
  ThreadPool pool(4);
  CHECK_EQ(pool.size(), 4);
  for (int64_t n : {1, 7, 100, 10007}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, 3, [&](int64_t b, int64_t e) {
      CHECK(b < e);
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK_EQ(wrong, 0);
  }
  std::set<std::thread::id> ids;
  std::mutex mu;
  pool.parallel_for(64, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> l(mu);
    ids.insert(std::this_thread::get_id());
  });
  CHECK(ids.size() > 1);
  CHECK_THROWS_CODE(pool.parallel_for(100, 1,
                                      [](int64_t b, int64_t) {
                                        if (b >= 50) fail(ErrorCode::Aborted, "stop at " + std::to_string(b));
                                      }),
                    Aborted, "stop at");
  // Nested parallel_for runs serially inside a worker; the pool stays usable.
  std::atomic<int64_t> total{0};
  pool.parallel_for(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(10, 1, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  CHECK_EQ(total.load(), 80);
  // Two callers at once are serialised, both complete.
  std::atomic<int64_t> sum{0};
  auto job = [&] {
    for (int r = 0; r < 50; ++r)
      pool.parallel_for(1000, 10, [&](int64_t b, int64_t e) { sum += e - b; });
  };
  std::thread t1(job), t2(job);
  t1.join();
  t2.join();
  CHECK_EQ(sum.load(), 100000);
  // Null pool = serial.
  int64_t covered = 0;
  parallel_for(nullptr, 10, 1, [&](int64_t b, int64_t e) { covered += e - b; });
  CHECK_EQ(covered, 10);
}

TEST(run_pair_side_by_side_only_when_balanced_on_two_threads) {
  // The threads a job's own parallel_for ran on (a job sleeps a little per chunk so a second thread joins when free).
  using Ids = std::set<std::thread::id>;
  ThreadPool pool(2);
  std::mutex mu;
  // Side by side, each job waits (up to 2 s) for the other to start, so a worker that the machine's load delays
  // still takes the second job (without the wait the caller, done with the first, claims it: a flake under load).
  std::atomic<int> started{0};
  bool wait_for_other = false;
  auto job = [&](Ids& ids, std::thread::id& self) {
    return [&] {
      self = std::this_thread::get_id();
      ++started;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (wait_for_other && started.load() < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      pool.parallel_for(16, 1, [&](int64_t, int64_t) {
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        std::lock_guard<std::mutex> l(mu);
        ids.insert(std::this_thread::get_id());
      });
    };
  };
  {  // balanced (0.5 / 0.5): a thread each, everything inside serial on it
    Ids a, b;
    std::thread::id sa, sb;
    wait_for_other = true;
    run_pair(&pool, 1.0, 1.0, job(a, sa), job(b, sb));
    wait_for_other = false;
    CHECK(sa != sb);
    CHECK(a.size() == 1 && *a.begin() == sa);
    CHECK(b.size() == 1 && *b.begin() == sb);
  }
  {  // unbalanced (0.6 > kPairShare): one after the other on the caller, each with both threads
    Ids a, b;
    std::thread::id sa, sb;
    run_pair(&pool, 3.0, 2.0, job(a, sa), job(b, sb));
    CHECK(sa == std::this_thread::get_id() && sb == sa);
    CHECK(a.size() == 2 && b.size() == 2);
  }
  {  // more than two threads, or no pool: one after the other
    ThreadPool four(4);
    std::thread::id sa, sb;
    run_pair(&four, 1.0, 1.0, [&] { sa = std::this_thread::get_id(); }, [&] { sb = std::this_thread::get_id(); });
    CHECK(sa == std::this_thread::get_id() && sb == sa);
    run_pair(nullptr, 1.0, 1.0, [&] { sa = std::thread::id(); }, [&] { sb = std::this_thread::get_id(); });
    CHECK(sa == std::thread::id() && sb == std::this_thread::get_id());
  }
  // An error in either job reaches the caller; the pool stays usable.
  CHECK_THROWS_CODE(run_pair(&pool, 1.0, 1.0, [] {}, [] { fail(ErrorCode::Aborted, "second job"); }), Aborted,
                    "second job");
  int ran = 0;
  auto count = [&] {
    std::lock_guard<std::mutex> l(mu);
    ++ran;
  };
  run_pair(&pool, 1.0, 1.0, count, count);
  CHECK_EQ(ran, 2);
}
