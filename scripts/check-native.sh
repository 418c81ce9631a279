#!/usr/bin/env bash
# Configures, builds and runs the C++ unit tests (pixelllm_native_tests via ctest), used by CI.
#   scripts/check-native.sh              Release build (-Werror) in build/native-check, then the ASan+UBSan
#                                        build (PIXELLLM_SANITIZE=ON, Debug) in build/native-asan
#   scripts/check-native.sh --no-sanitize   only the Release build
#   scripts/check-native.sh --sanitize-only only the sanitizer build
# Needs the packages in scripts/apt-packages.txt. The addon is not built here (PIXELLLM_ADDON=OFF): npm's
# cmake-js build does that. Extra arguments after `--` go to the test binary (a name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

release=1
sanitize=1
filter=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-sanitize) sanitize=0 ;;
    --sanitize-only) release=0 ;;
    --) shift; filter=("$@"); break ;;
    *) echo "check-native: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

jobs="$(nproc 2>/dev/null || echo 2)"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

run_suite() {  # dir, build type, extra cmake args...
  local dir="$1" type="$2"
  shift 2
  echo "== check-native: $dir ($type $*)"
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE="$type" -DPIXELLLM_BUILD_TESTS=ON \
    -DPIXELLLM_ADDON=OFF -DPIXELLLM_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" --parallel "$jobs"
  if [[ ${#filter[@]} -gt 0 ]]; then
    "$dir/pixelllm_native_tests" "${filter[@]}"
  else
    ctest --test-dir "$dir" --output-on-failure
  fi
}

if [[ $release == 1 ]]; then
  run_suite build/native-check Release
fi
if [[ $sanitize == 1 ]]; then
  # OpenBLAS' own threads are not instrumented; leak checking stays on for our code.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    run_suite build/native-asan Debug -DPIXELLLM_SANITIZE=ON
fi
echo "== check-native: ok"
