#include "core/env.h"

#include <cstdlib>

namespace pixelllm::core {

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0' && n >= lo && n <= hi) ? static_cast<int>(n) : fallback;
}

}  // namespace pixelllm::core
