#!/usr/bin/env bash
# The demo model's GPU recipe as one prepared command for a lent device machine (engines/demo/TRAINING.md, "What would
# get it to the targets"). Run from the repository root, as ONE device call:
#
#   bash engines/reference/scripts/gpu_train.sh [JOINT_MINUTES [MASK_MINUTES]]      (defaults 5 and 1.5)
#
# 1. reports the GPU, python, torch and the imports the trainer needs (and stops with the missing ones);
# 2. a joint run (every task) from the shipped weights (engines/demo) on fresh scenes for JOINT_MINUTES;
# 3. the mask stage with the SAM image encoder (--stage mask --mask-encoder) from that run for MASK_MINUTES;
# 4. writes the final weights to $OUT/gpu_mask as <= 15 MiB shards (what comes back is at most 8 files of 16 MiB)
#    with both train.logs beside them.
# Back here: `cd engines/reference && .venv/bin/python -m pixelllm_ref.train --run <files_at>/gpu_mask --export DIR`,
# then `npx pixelllm eval --model DIR ...`. Environment: SEED (scene seed of the joint run; the mask stage uses SEED+1;
# default 31, never used before), BATCH (48), WORKERS (14 data processes), LR (7e-5), DEVICE (cuda; `cpu` to try the
# script here with tiny budgets), PYTHON (python3), CONFIG (the architecture, default engines/configs/demo.json; it may
# differ from the shipped model's in the fused grid alone: `configs.with_fused_grid(cfg, 16)` writes one at 16 x 16). Then compare before exporting:
# `.venv/bin/python -m pixelllm_ref.validate ../demo <files_at>/gpu_mask` (validation losses, held-out scenes).
# LR: on the CPU (batch 8, session 9; validation losses, 64 held-out scenes) 100 steps from the shipped weights at
# 3e-4 raised every term (refer_point 3.32 -> 4.78 px, mask 0.199 -> 0.235), at 3e-5 lowered them (3.07, 0.190);
# batch 48 averages 6x the images per step: 7e-5 is 3e-5 scaled by sqrt(6), untested. Fresh training-only probes
# learn at 5x the rate (--probe-lr-mult) and are held off the encoders for their first 100 steps (--probe-warmup).
set -euo pipefail
JOINT_MIN=${1:-5}
MASK_MIN=${2:-1.5}
SEED=${SEED:-31}
BATCH=${BATCH:-48}
WORKERS=${WORKERS:-14}
LR=${LR:-7e-5}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
[[ $PY == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # relative to the start; keeps a venv link
OUT=${OUT:?"set OUT to the folder the weights go to (the device machine sets it)"}
root="$(cd "$(dirname "$0")/../../.." && pwd)"
CONFIG=$(realpath "${CONFIG:-$root/engines/configs/demo.json}")  # relative to where the script was started
runs="$(mktemp -d)"
cd "$root/engines/reference"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" - "$DEVICE" <<'EOF'
import importlib, sys
missing = [m for m in ("torch", "numpy", "safetensors", "tokenizers", "PIL", "pycocotools") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_train.sh: missing python modules: {', '.join(missing)} (carry wheels and pip install them first)")
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_train.sh: DEVICE=cuda but torch sees no GPU")
EOF

common=(--w-probe 0 --probe-only 0 --steps 1000000 --schedule time --device "$DEVICE" --workers "$WORKERS"
        --batch-size "$BATCH")
t0=$(date +%s)
"$PY" -m pixelllm_ref.train --run "$runs/gpu_joint" --config "$CONFIG" --init-from ../demo --seed "$SEED" "${common[@]}" \
  --w-cells 1.0 --w-attn 1.0 --text-ramp 0 0 --w-objects 0.5 --probe-warmup 100 --probe-lr-mult 5 --mask-rows 4 --warmup 30 --lr "$LR" \
  --minutes "$JOINT_MIN"
t1=$(date +%s)
"$PY" -m pixelllm_ref.train --run "$runs/gpu_mask" --init-from "$runs/gpu_joint/ckpt.pt" --seed "$((SEED + 1))" \
  "${common[@]}" --stage mask --mask-encoder --w-keep 10 --mask-rows 6 --pred-box-ramp 0 0 --warmup 20 --lr 1e-4 \
  --minutes "$MASK_MIN"
t2=$(date +%s)
mkdir -p "$OUT/gpu_mask"
"$PY" -m pixelllm_ref.train --run "$runs/gpu_mask" --shards "$OUT/gpu_mask" --inference-only
cp "$runs/gpu_joint/train.log" "$OUT/gpu_mask/joint.log"
cp "$runs/gpu_mask/train.log" "$OUT/gpu_mask/mask.log"
echo "gpu_train.sh: joint $((t1 - t0)) s, mask stage $((t2 - t1)) s; last log lines:"
tail -n 1 "$runs/gpu_joint/train.log" "$runs/gpu_mask/train.log"
ls -l "$OUT/gpu_mask"
