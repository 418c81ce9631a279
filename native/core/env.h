// Integer settings from the environment (PIXELLLM_* knobs).
#pragma once

namespace pixelllm::core {

// The decimal integer in environment variable `name` when it is set, parses completely and lies in [lo, hi];
// `fallback` otherwise (unset, empty, not a number, out of range).
int env_int(const char* name, int fallback, int lo, int hi);

}  // namespace pixelllm::core
