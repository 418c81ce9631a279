// Shared helpers for the libFuzzer harnesses (fuzz/*_fuzzer.cc).
// A harness may let only pixelllm::core::Error escape from the code under test; anything else (another exception
// type, a crash, a sanitizer report, a broken invariant) is a finding and aborts the run with a message.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"

namespace pixelllm::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Runs fn(); a core::Error is the expected outcome of bad input, any other exception is a finding.
template <class Fn>
bool only_core_errors(const char* what, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const core::Error& e) {
    // Every error must carry a stable code name.
    if (std::string(e.code_name()).empty()) finding(std::string(what) + ": core::Error without a code name");
    return false;
  } catch (const std::exception& e) {
    finding(std::string(what) + ": non-core exception: " + e.what());
  } catch (...) {
    finding(std::string(what) + ": unknown exception");
  }
}

}  // namespace pixelllm::fuzz
