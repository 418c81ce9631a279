#!/usr/bin/env bash
# Compile-checks the TensorRT backend without TensorRT libraries or a GPU:
#   scripts/check-tensorrt.sh HEADERS_DIR [CUDA_HOME]
# HEADERS_DIR holds NvInfer.h / NvOnnxParser.h (e.g. the include/ of an NVIDIA/TensorRT checkout; never commit it).
# Every .cc under native/runtime/tensorrt and native/runtime (select, plan_manifest, build_engines, sha256, ...: the
# CPU-library files that change with PIXELLLM_HAVE_TENSORRT) is compiled with g++ -std=c++17 -Wall -Wextra -Werror
# (TensorRT and CUDA headers as -isystem, PIXELLLM_HAVE_TENSORRT=1), every .cu with nvcc (-Werror all-warnings, host
# -Wall -Wextra -Werror, sm_80 + sm_90), and runtime/backend.h once without PIXELLLM_HAVE_TENSORRT (the CPU-only
# build).
# Objects go to a temporary directory; nothing is linked (there is no libnvinfer here).
set -euo pipefail
if [[ $# -lt 1 || ! -f "$1/NvInfer.h" ]]; then
  echo "usage: $0 HEADERS_DIR [CUDA_HOME]   (HEADERS_DIR must contain NvInfer.h)" >&2
  exit 2
fi
HDR=$(cd "$1" && pwd)
CUDA_HOME=${2:-${CUDA_HOME:-/usr/local/cuda}}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC="$ROOT/native/runtime/tensorrt"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
CXX=${CXX:-g++}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
version=$(grep -E '#define (TRT|NV_TENSORRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? ' "$HDR/NvInferVersion.h" | awk '{print $3}' | head -3 | paste -sd.)
echo "TensorRT headers: $HDR (version $version); CUDA: $CUDA_HOME ($("$NVCC" --version | tail -1))"
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -I"$ROOT/native" -isystem "$HDR" -isystem "$CUDA_HOME/include"
          -DPIXELLLM_HAVE_TENSORRT=1)
n=0
for f in "$SRC"/*.cc "$ROOT"/native/runtime/*.cc; do
  echo "+ $CXX ${CXXFLAGS[*]} -c ${f#"$ROOT/native/"}"
  "$CXX" "${CXXFLAGS[@]}" -c "$f" -o "$OUT/$(basename "$(dirname "$f")")_$(basename "$f").o"
  n=$((n + 1))
done
for f in "$SRC"/*.cu; do
  [[ -e "$f" ]] || continue
  echo "+ nvcc -std=c++17 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror -c $(basename "$f")"
  "$NVCC" -std=c++17 -I"$ROOT/native" -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -c "$f" -o "$OUT/$(basename "$f").o"
  n=$((n + 1))
done
printf '#include "runtime/backend.h"\nint main() { return pixelllm::runtime::probe_tensorrt().available ? 1 : 0; }\n' \
  > "$OUT/cpu_only.cc"
echo "+ $CXX -std=c++17 -Wall -Wextra -Werror -c backend.h (without PIXELLLM_HAVE_TENSORRT)"
"$CXX" -std=c++17 -Wall -Wextra -Werror -I"$ROOT/native" -c "$OUT/cpu_only.cc" -o "$OUT/cpu_only.o"
echo "OK: $n TensorRT-enabled sources + the CPU-only backend.h compiled cleanly against TensorRT $version"
