"""Evaluation scenes for `pixelllm eval`: N fresh scenes from one seed, written as PNG + annotation JSON.

Scene k of (seed S, count N) is `scenes.make_scene(eval_scene_seed(S, k))`, with scene seeds from 10**9 upwards
(training draws seeds < 10**6, see train.TRAIN_SEED_LIMIT and data.TRAIN_SEEDS_END), so evaluation never sees a
training image; different S give disjoint sets for N < 10**6.

Output folder:
  scene_0000.png ...     the scene at its native size (RGB)
  scene_0000.json ...    scenes.annotations() without the mouse trace and word timings (objects with box,
                         mask_rle (COCO RLE of the visible mask), expression(s), caption; narrative; size; seed),
                         plus per object what evaluate.py (the reference-side evaluation) scores against:
                           eval_expression   the referring expression evaluate.py asks for (data.example's pick for
                                             the "refer" task of this seed)
                           silhouette_rle    the full (unoccluded) mask with ring holes filled (evaluate.py
                                             _filled_full_masks), the region pointInObject counts as inside
  manifest.json          {"seed", "count", "scenes": [{"seed", "image", "annotations"}], "prompts": {...},
                          "vocabulary": {"shapes", "colours", "sizes"}, "generator"}
The prompts and the vocabulary come from scenes.py, so the JS side has one source for the scene grammar.

Seed 0 gives the scenes of `python -m pixelllm_ref.evaluate MODEL` (seed base 10**9); seed S those of
`--seed-base 10**9 + S * 10**6`. The reference evaluates at the model's input size, `pixelllm eval` at the scene's
native size through the native resize, so the numbers agree closely, not to the last digit.

Usage: python -m pixelllm_ref.eval_scenes --seed 0 --count 20 --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import data, scenes
from .scene_render import render

EVAL_SEED_BASE = 10 ** 9
SEEDS_PER_EVAL_SEED = 10 ** 6
DROPPED_KEYS = ("trace", "timed_caption", "utterance_centres", "utterance_boxes")


def eval_scene_seed(seed: int, k: int) -> int:
    """Scene seed of the k-th evaluation scene for evaluation seed `seed`."""
    if seed < 0 or not 0 <= k < SEEDS_PER_EVAL_SEED:
        raise ValueError(f"need seed >= 0 and 0 <= k < {SEEDS_PER_EVAL_SEED}, got seed={seed}, k={k}")
    return EVAL_SEED_BASE + seed * SEEDS_PER_EVAL_SEED + k


def refer_expressions(layout) -> list[str]:
    """The expression data.example(seed, "refer") draws for each object (same generator, same draw order)."""
    rng = np.random.default_rng([layout.seed, data.TASKS.index("refer"), 12345])
    out = [""] * len(layout.objects)
    for k in rng.permutation(len(layout.objects)):
        exprs = layout.objects[k].expressions
        out[k] = exprs[int(rng.integers(len(exprs)))]
    return out


def silhouettes(layout) -> np.ndarray:
    """(n, H, W) bool full masks at the native size with ring holes filled (a ring drawn as a circle)."""
    objs = [dataclasses.replace(o, shape="circle" if o.shape == "ring" else o.shape) for o in layout.objects]
    return render(dataclasses.replace(layout, objects=objs), layout.height, layout.width, masks_only=True).full_masks


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def manifest_header(seed: int, count: int) -> dict:
    return {
        "generator": f"pixelllm_ref.eval_scenes --seed {seed} --count {count}",
        "seed": seed,
        "count": count,
        "prompts": {"narrative": scenes.NARRATIVE_PROMPT, "region": scenes.REGION_PROMPT,
                    "refer_prefix": scenes.REFER_PREFIX},
        "vocabulary": {"shapes": list(scenes.SHAPES), "colours": list(scenes.COLOURS), "sizes": list(scenes.SIZES)},
    }


def write_eval_scenes(seed: int, count: int, out_dir) -> dict:
    """Writes the scenes + manifest.json into `out_dir` (created); returns the manifest."""
    if count < 1 or count > SEEDS_PER_EVAL_SEED:
        raise ValueError(f"count must be in [1, {SEEDS_PER_EVAL_SEED}], got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**manifest_header(seed, count), "scenes": []}
    for k in range(count):
        scene_seed = eval_scene_seed(seed, k)
        sc = scenes.make_scene(scene_seed)
        ann = scenes.annotations(sc)
        for key in DROPPED_KEYS:
            ann.pop(key, None)
        sil = silhouettes(sc.layout)
        for o, expr, m in zip(ann["objects"], refer_expressions(sc.layout), sil):
            o["eval_expression"] = expr
            o["silhouette_rle"] = _rle(m)
        name = f"scene_{k:04d}"
        scenes.write_png(out / f"{name}.png", sc.image)
        (out / f"{name}.json").write_text(json.dumps(ann) + "\n")
        manifest["scenes"].append({"seed": scene_seed, "image": f"{name}.png", "annotations": f"{name}.json"})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    write_eval_scenes(args.seed, args.count, args.out)
    print(f"wrote {args.count} scenes to {args.out} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
