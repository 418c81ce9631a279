// Shared fixture loading for the tests that compare against the reference fixtures written by
// engines/reference/scripts/fixtures_*.py under build/fixtures/<set>/<case>/: config.json + model.safetensors +
// one data file (<part>.safetensors). A missing fixture is a SKIP with a message (the test returns), never a failure.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "tests/test.h"

namespace pixelllm::test {

// The four golden cases (both text heads, square and bottom-padded image) of build/fixtures/golden.
inline const char* const kGoldenCases[] = {"bert_s0_h384", "bert_s1_h300", "t5_s0_h384", "t5_s1_h300"};

// $<env_var> when set, else the first build/fixtures/<set> found from the working directory upwards; empty when none.
inline std::filesystem::path fixtures_root(const char* env_var, const std::string& set) {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv(env_var)) return env;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "build" / "fixtures" / set)) return p / "build" / "fixtures" / set;
    if (p == p.parent_path()) break;
  }
  return {};
}

// One fixture case: its config, its model weights and its data tensors (inputs and expected outputs).
struct Fixture {
  std::string name;
  core::Json config;
  std::shared_ptr<core::SafeTensors> weights, data;
  core::JsonReader section(const std::string& key) const { return core::JsonReader(config, "config.json").object(key); }
};

// Where a fixture set lives and what writes it.
struct FixtureSource {
  const char* env_var;  // overrides the root, e.g. "PIXELLLM_FIXTURES"
  const char* set;      // build/fixtures/<set>, e.g. "golden"
  const char* part;     // the data file <part>.safetensors, e.g. "vision"
  const char* script;   // the script that writes it, for the SKIP message
};

// Loads case `name` of `src` into `c`; prints SKIP and returns false when its data file is absent.
inline bool load_fixture(const FixtureSource& src, const std::string& name, Fixture& c) {
  namespace fs = std::filesystem;
  const fs::path root = fixtures_root(src.env_var, src.set), dir = root / name;
  const std::string part = std::string(src.part) + ".safetensors";
  if (root.empty() || !fs::exists(dir / part)) {
    std::cout << "  SKIP " << name << ": no fixtures (run " << src.script << "; looked in "
              << (root.empty() ? "build/fixtures/" + std::string(src.set) : dir.string()) << ")\n";
    return false;
  }
  c.name = name;
  c.config = core::parse_json_file((dir / "config.json").string());
  c.weights = core::SafeTensors::open((dir / "model.safetensors").string());
  c.data = core::SafeTensors::open((dir / part).string());
  return true;
}

// Checks `got` against the fixture tensor `ref_name` (same element count, relative L2 <= tol), prints the error and
// returns it (1e30 when the sizes differ).
inline double check_against(const Fixture& c, const std::vector<float>& got, const std::string& ref_name,
                            double tol) {
  const core::Tensor ref = c.data->get(ref_name);
  CHECK_EQ(int64_t(got.size()), ref.numel());
  if (int64_t(got.size()) != ref.numel()) return 1e30;
  const double e = rel_l2(got.data(), ref.data(), ref.numel());
  std::cout << "    " << c.name << " " << ref_name << " rel_l2 " << e << "\n";
  CHECK_REL_L2(got.data(), ref.data(), ref.numel(), tol);
  return e;
}

}  // namespace pixelllm::test
