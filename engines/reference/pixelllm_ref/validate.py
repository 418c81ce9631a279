"""Teacher-forced validation losses of models on the same held-out scenes: `python -m pixelllm_ref.validate MODEL
[MODEL ...]` (a checkpoint, a model directory such as ../demo, or a shard directory).

Every loss term of a joint training step (`train.step_losses`, training-only probes and attention guidance off),
on fixed scenes that training never draws (`eval_scenes.eval_scene_seed(seed, k)`, default evaluation seed 900,
kept for validation: the reported `pixelllm eval` numbers use other seeds). Sensitive where the native eval is not:
`pixelllm eval` scores greedy outputs, +-0.02 on 100 scenes, while these losses separate a warm start at lr 1e-5 from
one at 3e-4 after 100 steps (session 9). Use it to check a continued run against the model it started from before
exporting it. ~30 s for 64 images on one core.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import data, train
from .eval_scenes import eval_scene_seed
from .evaluate import load_model

TERMS = ("trace_text", "trace_point", "refer_point", "mask", "region_text", "region_point", "det")


def validation_losses(source: Path, images: int = 64, seed: int = 900, batch: int = 8) -> dict:
    """Mean of each term of TERMS over `images` held-out scenes (batches of `batch`) for the model at `source`."""
    model = load_model(source)
    cfg = model.cfg
    tc = train.TrainConfig(seed=seed, batch_size=batch, w_probe=0.0, probe_only=0, w_attn=0.0, text_ramp=(0, 0),
                           mask_rows=4, workers=0)
    dc = data.DataConfig.for_model(cfg)
    acc: dict[str, list[float]] = {k: [] for k in TERMS}
    with torch.no_grad():
        for i, start in enumerate(range(0, images, batch)):
            seeds = [eval_scene_seed(seed, k) for k in range(start, min(images, start + batch))]
            b = data.to_torch(train.make_step_batch(tc, dc, i, seeds), torch.device("cpu"))
            _, m = train.step_losses(model, b, tc, train.TRAIN_SEED_LIMIT + i)  # past every ramp: the final mix
            for k in TERMS:
                acc[k].append(m[k] * len(seeds))
    return {k: float(np.sum(v) / images) for k, v in acc.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--seed", type=int, default=900, help="evaluation seed of the scenes (default 900)")
    ap.add_argument("--json", action="store_true", help="one JSON object per model")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for src in a.models:
        r = validation_losses(src, a.images, a.seed)
        print(json.dumps({"model": str(src), **r}) if a.json else
              f"{src}: " + " ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
