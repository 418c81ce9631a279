#include "runtime/tensorrt/logger.h"

#include <cstdio>
#include <cstdlib>

namespace pixelllm::runtime::trt {

Logger::Logger() {
  const char* v = std::getenv("PIXELLLM_TRT_VERBOSE");
  verbose_ = v == nullptr ? 0 : (std::string(v) == "2" ? 2 : 1);
}

void Logger::log(Severity severity, const char* msg) noexcept {
  try {
    if (severity <= Severity::kERROR) {
      std::lock_guard<std::mutex> lock(mu_);
      if (errors_.size() < 4096) errors_ += (errors_.empty() ? "" : "; ") + std::string(msg);
    }
    const bool show = verbose_ == 2 || (verbose_ == 1 && severity <= Severity::kWARNING);
    if (show) std::fprintf(stderr, "[pixelllm tensorrt] %s\n", msg);
  } catch (...) {
    // logging must never throw into TensorRT
  }
}

std::string Logger::last_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_;
}

void Logger::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  errors_.clear();
}

Logger& logger() {
  static Logger instance;
  return instance;
}

}  // namespace pixelllm::runtime::trt
