#!/usr/bin/env bash
# `npm run test:asan`: builds an AddressSanitizer + UndefinedBehaviorSanitizer variant of the addon and runs the
# whole mocha suite on it.
#   build/asan/Release/pixelllm.node   cmake-js, RelWithDebInfo, PIXELLLM_SANITIZE=ON (CMakeLists.txt: ASan+UBSan on
#                                      the library and the addon, UB is fatal), TensorRT off
#   node runs with LD_PRELOAD of GCC's libasan + libubsan (node itself is not instrumented, so the runtime must be
#   loaded first) and PIXELLLM_NATIVE pointing at the sanitized addon (lib/native.ts loads it instead of
#   build/Release). Leak checking is off: node and V8 keep their heap at exit by design, which LSan would report
#   as leaks; leaks of ours are measured by bench/soak.ts (RSS over 1000 requests) instead.
# Extra arguments go to mocha (e.g. a file or -g PATTERN); default: the whole suite (.mocharc.json).
# Prints the build and test times; exits with mocha's status, or 1 when a sanitizer report was printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=build/asan
t0=$SECONDS
nice -n 10 npx --no-install cmake-js build --log-level warn -O "$OUT" -B RelWithDebInfo \
  --CDPIXELLLM_SANITIZE=ON --CDPIXELLLM_TENSORRT=OFF -p "$(nproc 2>/dev/null || echo 2)"
ADDON=$ROOT/$OUT/Release/pixelllm.node
test -f "$ADDON" || { echo "test-asan: no $ADDON" >&2; exit 1; }
echo "test-asan: built $ADDON in $((SECONDS - t0))s"

CXX_BIN=${CXX:-g++}
ASAN_LIB=$("$CXX_BIN" -print-file-name=libasan.so)
UBSAN_LIB=$("$CXX_BIN" -print-file-name=libubsan.so)
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
  [[ -f "$lib" ]] || { echo "test-asan: sanitizer runtime $lib not found" >&2; exit 1; }
done
# The addon must really be instrumented (a stale plain build would pass without checking anything).
[[ $(nm -D "$ADDON" | grep -c __asan_report) -gt 0 ]] || { echo "test-asan: $ADDON is not built with ASan" >&2; exit 1; }

LOG=$(mktemp)
t1=$SECONDS
rc=0
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" \
PIXELLLM_NATIVE="$ADDON" \
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1}" \
UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  node "$ROOT/node_modules/mocha/bin/mocha.js" --timeout 600000 "$@" 2>&1 | tee "$LOG" || rc=$?
if grep -qE '^==[0-9]+==ERROR: |runtime error: |SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$LOG"; then
  echo "test-asan: sanitizer report above" >&2
  rc=1
fi
rm -f "$LOG"
echo "test-asan: mocha under ASan+UBSan took $((SECONDS - t1))s (rc $rc), $((SECONDS - t0))s in all"
exit $rc
