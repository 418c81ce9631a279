#!/usr/bin/env bash
# Compiles our CUDA kernels (native/runtime/tensorrt/*.cu) with nvcc, -Werror all-warnings and host
# -Wall -Wextra -Werror, for sm_80 and sm_90; no TensorRT headers needed (the kernels only use the CUDA runtime).
# Then builds their test program (native/tests/cuda/test_kernels.cu: each kernel against a C++ reference, and a
# captured CUDA graph replaying decode steps); with --run it also runs it (on a machine with a GPU; without one
# it prints "SKIPPED: no CUDA device" and exits 0).
#   scripts/check-cuda-kernels.sh [--run] [CUDA_HOME]     (default $CUDA_HOME, else /usr/local/cuda)
# Exits 0 with "SKIPPED" when there is no nvcc (CI counts it as skipped, not passed). scripts/check-tensorrt.sh
# does the same compile plus the TensorRT sources when TensorRT headers are available.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=0
if [[ "${1:-}" == "--run" ]]; then
  RUN=1
  shift
fi
CUDA_HOME=${1:-${CUDA_HOME:-/usr/local/cuda}}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
if [[ ! -x "$NVCC" ]]; then
  echo "SKIPPED: no nvcc at $NVCC"
  exit 0
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "nvcc: $("$NVCC" --version | tail -1)"
n=0
for f in "$ROOT"/native/runtime/tensorrt/*.cu; do
  [[ -e "$f" ]] || continue
  echo "+ nvcc -std=c++17 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror sm_80,sm_90 -c ${f#"$ROOT/"}"
  "$NVCC" -std=c++17 -I"$ROOT/native" -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -c "$f" -o "$OUT/$(basename "$f").o"
  n=$((n + 1))
done
echo "OK: $n CUDA source(s) compiled"
TEST_SOURCES=(native/tests/cuda/test_kernels.cu native/runtime/tensorrt/kernels.cu native/tests/test_main.cc
              native/core/error.cc)
echo "+ nvcc ... ${TEST_SOURCES[*]} -o test_kernels"
"$NVCC" -std=c++17 -I"$ROOT/native" -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  "${TEST_SOURCES[@]/#/$ROOT/}" -o "$OUT/test_kernels"
echo "OK: the kernel test program builds"
if [[ $RUN == 1 ]]; then
  if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "SKIPPED: no CUDA device"
    exit 0
  fi
  "$OUT/test_kernels"
fi
