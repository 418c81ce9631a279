"""Access to the official golden files in ../shared/golden (outputs of google-research/scenic pixel_llm)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOLDEN_CASES = ("bert_s0_h384", "bert_s1_h300", "t5_s0_h384", "t5_s1_h300")


def golden_dir() -> Path:
    env = os.environ.get("PIXELLLM_GOLDEN")
    if env:
        return Path(env)
    # engines/reference/pixelllm_ref/golden.py -> repo root is parents[3]; shared/ sits beside the repo.
    root = Path(__file__).resolve().parents[3]
    for cand in (root.parent / "shared" / "golden", root / "shared" / "golden"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("golden directory not found; set PIXELLLM_GOLDEN")


@dataclass
class Golden:
    name: str            # e.g. "bert_s0_h384"
    head: str            # "bert" or "t5"
    official_config: dict
    params: dict         # flax path ("git_backbone/blocks.0/attn/q_proj/kernel") -> np.ndarray
    inputs: dict         # "images", "padding_mask", "prompt_boxes", "text_tokens", ... (without "input_")
    outputs: dict        # "tf_text_logits", "cap_text_tokens", ... (without "out_")


def load_golden(name: str) -> Golden:
    d = golden_dir()
    z = np.load(d / f"golden_{name}.npz")
    head = name.split("_")[0]
    params, inputs, outputs = {}, {}, {}
    for k in z.files:
        if k.startswith("param/"):
            params[k[len("param/"):]] = z[k]
        elif k.startswith("input_"):
            inputs[k[len("input_"):]] = z[k]
        elif k.startswith("out_"):
            outputs[k[len("out_"):]] = z[k]
    cfg = json.loads((d / f"tiny-{head}.json").read_text())
    return Golden(name=name, head=head, official_config=cfg, params=params, inputs=inputs, outputs=outputs)


def rel_l2(a, b) -> float:
    """Relative L2 error ||a-b|| / max(||b||, 1e-12) in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def fixture_main(write_case, description: str, root: Path, argv=None) -> int:
    """The command line of the golden fixture scripts (scripts/fixtures_{vision,text,prompt_mask}.py): writes
    `write_case(name, out_dir)` for each of --cases (default: every golden case) into --out (default
    <root>/build/fixtures/golden), single-threaded torch."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=description.splitlines()[0])
    ap.add_argument("--out", default=str(Path(root) / "build" / "fixtures" / "golden"))
    ap.add_argument("--cases", default=",".join(GOLDEN_CASES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.cases.split(","):
        write_case(name, Path(args.out))
    return 0
