"""Command line: official PixelLLM parameters -> a pixelllm model directory.

    python -m pixelllm_ref.convert_cli --official-config CFG.json --params CKPT.msgpack|PARAMS.npz OUT_DIR \
        [--tokenizer tokenizer.json]

CKPT.msgpack: a Flax checkpoint written by `flax.serialization.to_bytes` (see `flax_checkpoint.py`).
PARAMS.npz: golden-style arrays named `param/<flax path>` (other keys are ignored).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .convert import ConversionError, convert, write_model_dir
from .flax_checkpoint import read_flax_checkpoint


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as z:
            flat = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
        if not flat:
            raise ConversionError(f"{path}: no 'param/<flax path>' arrays in this npz")
        return flat
    return read_flax_checkpoint(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pixelllm_ref.convert_cli", description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-config", required=True, help="official PixelLLM config as JSON (official keys)")
    ap.add_argument("--params", required=True, help="Flax msgpack checkpoint, or npz with param/<path> keys")
    ap.add_argument("--tokenizer", help="tokenizer.json to copy into the model directory")
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    official_cfg = json.loads(Path(a.official_config).read_text())
    cfg, tensors = convert(load_params(a.params), official_cfg)
    tok = Path(a.tokenizer).read_text() if a.tokenizer else None
    write_model_dir(a.out_dir, cfg, tensors, tok)
    print(f"wrote {a.out_dir}: {len(tensors)} tensors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
