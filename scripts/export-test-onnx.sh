#!/usr/bin/env bash
# ONNX exports for test/model/onnx.test.ts (onnxruntime-node vs the native runtime): fp32 and fp16 graphs (every
# group the model has: T5 models also get decoder_forward, the official full pass for the mask text states) of
#   build/golden/bert_s0_h384, build/golden/t5_s1_h300 (written by make_golden_models.py) and the committed
#   fixture model test/fixtures/reference/model
# into build/onnx/<name>/ (gitignored). Run after scripts/fixtures.sh has written build/golden.
# Usage: scripts/export-test-onnx.sh [OUT_ROOT]   (default build/onnx; PYTHON overrides the reference venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-engines/reference/.venv/bin/python}
OUT=${1:-build/onnx}
[ -x "$PY" ] || { echo "export-test-onnx: no python at $PY (run engines/reference/setup_venv.sh)" >&2; exit 1; }
export PYTHONPATH="$PWD/engines/reference${PYTHONPATH:+:$PYTHONPATH}"
# (The fixture model's SAM neck is 64 wide: its mask_decoder is exported at that width like any other.)
for spec in bert_s0_h384=build/golden/bert_s0_h384 t5_s1_h300=build/golden/t5_s1_h300 \
            fixture=test/fixtures/reference/model; do
  IFS== read -r name dir groups <<<"$spec"
  gargs=()
  [ -n "$groups" ] && gargs=(--groups "$groups")
  [ -f "$dir/config.json" ] || { echo "export-test-onnx: no model dir $dir (run scripts/fixtures.sh --build-only)" >&2; exit 1; }
  t0=$SECONDS
  rm -rf "$OUT/$name"
  "$PY" -m pixelllm_ref.export_onnx "$dir" "$OUT/$name" "${gargs[@]}" >/dev/null
  "$PY" -m pixelllm_ref.export_onnx "$dir" "$OUT/$name" --fp16 "${gargs[@]}" >/dev/null
  echo "$name: $OUT/$name ($((SECONDS - t0))s)"
done
