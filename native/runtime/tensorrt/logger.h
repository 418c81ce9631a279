// nvinfer1::ILogger that keeps the last errors (for exception messages) and forwards warnings and above to stderr
// when PIXELLLM_TRT_VERBOSE is set (info/verbose too when it is "2").
#pragma once

#include <mutex>
#include <string>

#include <NvInferRuntime.h>

namespace pixelllm::runtime::trt {

class Logger : public nvinfer1::ILogger {
 public:
  Logger();
  void log(Severity severity, const char* msg) noexcept override;
  std::string last_errors() const;   // the errors logged since the last clear(), "; "-joined
  void clear();

 private:
  mutable std::mutex mu_;
  std::string errors_;
  int verbose_ = 0;
};

Logger& logger();   // the process-wide logger every builder/runtime uses

}  // namespace pixelllm::runtime::trt
