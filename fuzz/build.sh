#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/*_fuzzer.cc) with clang + ASan + UBSan into build/fuzz/.
#   fuzz/build.sh            all harnesses
# Needs clang and its runtime (Debian bookworm: apt-get install clang-14 libclang-rt-14-dev; any clang >= 14 with
# libFuzzer works: set CXX=clang++-NN). The harnesses compile the library sources directly (core, cpu,
# model, pipeline, runtime + runtime/cpu), not the cmake library, so they get fuzzer coverage instrumentation.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}

if [[ -z "${CXX:-}" ]]; then
  for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then CXX=$c; break; fi
  done
fi
[[ -n "${CXX:-}" ]] || { echo "fuzz/build.sh: no clang++ found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }

CBLAS_INC=$(dirname "$(find /usr/include -name cblas.h -path '*openblas*' 2>/dev/null | head -1)" 2>/dev/null || true)
FLAGS=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined -I"$ROOT/native" -I"$ROOT/fuzz")
[[ -n "$CBLAS_INC" ]] && FLAGS+=(-isystem "$CBLAS_INC")
LINK=(-fsanitize=fuzzer,address,undefined -lopenblas -lpthread -lm)

mkdir -p "$OUT/obj"
# The library sources, as CMakeLists.txt globs them (TensorRT excluded).
SOURCES=(native/core/*.cc native/cpu/*.cc native/model/*.cc native/pipeline/*.cc native/runtime/*.cc native/runtime/cpu/*.cc)
OBJS=()
jobs=$(nproc 2>/dev/null || echo 2)
pids=()
# stale OBJ SRC: true when OBJ is missing or older than SRC, this script, or any header in its depfile.
stale() {
  local obj=$1 src=$2
  [[ -f "$obj" && -f "$obj.d" ]] || return 0
  [[ "$src" -nt "$obj" || fuzz/build.sh -nt "$obj" ]] && return 0
  local f
  for f in $(sed -e 's/\\$//' -e 's/^[^:]*://' "$obj.d"); do
    [[ -f "$f" && "$f" -nt "$obj" ]] && return 0
  done
  return 1
}
for src in "${SOURCES[@]}"; do
  obj="$OUT/obj/$(echo "${src%.cc}" | tr '/' '_').o"
  OBJS+=("$obj")
  if stale "$obj" "$src"; then
    "$CXX" "${FLAGS[@]}" -MMD -MF "$obj.d" -c "$src" -o "$obj" &
    pids+=($!)
    if [[ ${#pids[@]} -ge $jobs ]]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done

for h in fuzz/*_fuzzer.cc; do
  name=$(basename "${h%.cc}")
  bin=$OUT/$name
  relink=0
  [[ -f "$bin" && "$h" -nt "$bin" ]] && relink=1
  [[ -f "$bin" ]] || relink=1
  for o in "${OBJS[@]}" fuzz/fuzz_util.h; do [[ "$o" -nt "$bin" ]] && relink=1; done
  if [[ $relink == 1 ]]; then
    "$CXX" "${FLAGS[@]}" "$h" "${OBJS[@]}" "${LINK[@]}" -o "$bin"
    echo "built $bin"
  else
    echo "up to date: $bin"
  fi
done
