// A minimal test harness (no framework): TEST(name) registers a function; CHECK* macros record failures and
// keep going; main() (test_main.cc) runs every test whose name contains argv[1], or all of them.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace pixelllm::test {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};
std::vector<TestCase>& registry();
int& failures();  // failures in the current test

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

inline void report(const char* file, int line, const std::string& what) {
  ++failures();
  std::cerr << "  FAIL " << file << ":" << line << ": " << what << "\n";
}

// Relative L2 error ||a - b|| / max(||b||, tiny) in double.
double rel_l2(const float* a, const double* b, int64_t n);
double rel_l2(const float* a, const float* b, int64_t n);

// Deterministic pseudo-random floats in [lo, hi).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  uint32_t next() {
    s_ = s_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(s_ >> 33);
  }
  float uniform(float lo = -1.f, float hi = 1.f) { return lo + (hi - lo) * (next() / 2147483648.0f); }
  std::vector<float> vec(size_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
  }

 private:
  uint64_t s_;
};

// Temporary directory removed at exit of the test binary.
std::string temp_dir();

}  // namespace pixelllm::test

#define PL_CAT2(a, b) a##b
#define PL_CAT(a, b) PL_CAT2(a, b)
#define TEST(name)                                                                         \
  static void PL_CAT(test_fn_, name)();                                                    \
  static ::pixelllm::test::Registrar PL_CAT(test_reg_, name)(#name, PL_CAT(test_fn_, name)); \
  static void PL_CAT(test_fn_, name)()

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) ::pixelllm::test::report(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    auto _va = (a);                                                                     \
    auto _vb = (b);                                                                     \
    if (!(_va == _vb)) {                                                                \
      std::ostringstream _os;                                                           \
      _os << "CHECK_EQ(" #a ", " #b "): " << _va << " != " << _vb;                      \
      ::pixelllm::test::report(__FILE__, __LINE__, _os.str());                          \
    }                                                                                   \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                           \
  do {                                                                                  \
    double _va = (a), _vb = (b);                                                        \
    if (!(std::fabs(_va - _vb) <= (tol))) {                                             \
      std::ostringstream _os;                                                           \
      _os.precision(10);                                                                \
      _os << "CHECK_NEAR(" #a ", " #b "): " << _va << " vs " << _vb << " (tol " << (tol) << ")"; \
      ::pixelllm::test::report(__FILE__, __LINE__, _os.str());                          \
    }                                                                                   \
  } while (0)

// Relative L2 of float a[n] against reference b[n] must be <= tol.
#define CHECK_REL_L2(a, b, n, tol)                                                      \
  do {                                                                                  \
    double _e = ::pixelllm::test::rel_l2((a), (b), (n));                                \
    if (!(_e <= (tol))) {                                                               \
      std::ostringstream _os;                                                           \
      _os << "CHECK_REL_L2(" #a ", " #b "): " << _e << " > " << (tol);                  \
      ::pixelllm::test::report(__FILE__, __LINE__, _os.str());                          \
    }                                                                                   \
  } while (0)

// expr must throw core::Error with the given ErrorCode; the message must contain `substr`.
#define CHECK_THROWS_CODE(expr, code_, substr)                                          \
  do {                                                                                  \
    bool _thrown = false;                                                               \
    try {                                                                               \
      (void)(expr);                                                                     \
    } catch (const ::pixelllm::core::Error& _e) {                                       \
      _thrown = true;                                                                   \
      if (_e.code() != ::pixelllm::core::ErrorCode::code_)                              \
        ::pixelllm::test::report(__FILE__, __LINE__, std::string("wrong code ") + _e.code_name() + ": " + _e.what()); \
      else if (std::string(_e.what()).find(substr) == std::string::npos)                \
        ::pixelllm::test::report(__FILE__, __LINE__, std::string("message lacks '") + (substr) + "': " + _e.what()); \
    } catch (const std::exception& _e) {                                                \
      _thrown = true;                                                                   \
      ::pixelllm::test::report(__FILE__, __LINE__, std::string("non-Error exception: ") + _e.what()); \
    }                                                                                   \
    if (!_thrown) ::pixelllm::test::report(__FILE__, __LINE__, "no exception from " #expr); \
  } while (0)
