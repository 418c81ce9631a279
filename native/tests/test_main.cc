#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "tests/test.h"

namespace pixelllm::test {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

int& failures() {
  static int f = 0;
  return f;
}

double rel_l2(const float* a, const double* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (!std::isfinite(num)) return INFINITY;
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

double rel_l2(const float* a, const float* b, int64_t n) {
  std::vector<double> bd(b, b + n);
  return rel_l2(a, bd.data(), n);
}

static std::string& temp_root() {
  static std::string root;
  return root;
}

std::string temp_dir() {
  if (temp_root().empty()) {
    char tmpl[] = "/tmp/pixelllm_native_tests_XXXXXX";
    char* d = mkdtemp(tmpl);
    if (!d) {
      std::cerr << "cannot create a temporary directory\n";
      std::exit(2);
    }
    temp_root() = d;
  }
  return temp_root();
}

}  // namespace pixelllm::test

int main(int argc, char** argv) {
  using namespace pixelllm::test;
  std::string filter = argc > 1 ? argv[1] : "";
  int run = 0, failed = 0;
  for (const auto& t : registry()) {
    if (!filter.empty() && std::string(t.name).find(filter) == std::string::npos) continue;
    ++run;
    failures() = 0;
    auto t0 = std::chrono::steady_clock::now();
    try {
      t.fn();
    } catch (const pixelllm::core::Error& e) {
      report(__FILE__, __LINE__, std::string("uncaught Error ") + e.code_name() + ": " + e.what());
    } catch (const std::exception& e) {
      report(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::cout << (failures() ? "FAIL " : "ok   ") << t.name << " (" << static_cast<int>(ms) << " ms)\n";
    if (failures()) ++failed;
  }
  if (!temp_root().empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_root(), ec);
  }
  std::cout << run - failed << "/" << run << " tests passed\n";
  return failed ? 1 : (run ? 0 : 1);
}
