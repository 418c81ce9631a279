"""Converter: official PixelLLM parameters (Flax tree) -> a pixelllm model directory.

A model directory is `config.json` + `model.safetensors` (+ `tokenizer.json`). Every component module
(`sam_image_encoder`, `eva02_encoder`, `feature_fusion`, `prompt_encoder`, `prompt_adapter`, `git_decoder` | `t5`,
`point_head`, `mask_adapter`, `mask_decoder`, `proposal_head`) provides two functions:

    config_from_official(official_cfg: dict) -> dict
        its own section of our config.json (stored under the component's name)
    convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]
        our tensors, every name starting with "<component>." ; it must `params.take(path)` every
        official array it uses, so that unknown/unused parameters can be refused.

Names inside a component follow the public implementation it builds on (Hugging Face `transformers` module
names for SAM, BERT and T5) so real checkpoints load with a prefix rename; see docs in engines/reference/README.md.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np


class ConversionError(ValueError):
    pass


class OfficialParams:
    """Flat view of an official Flax parameter tree: {"a/b/c": array}. Tracks which arrays were consumed."""

    def __init__(self, flat: dict[str, np.ndarray]):
        self._flat = {k: np.asarray(v) for k, v in flat.items()}
        self._used: set[str] = set()

    def take(self, path: str) -> np.ndarray:
        if path not in self._flat:
            raise ConversionError(f"official parameter missing: {path}")
        self._used.add(path)
        return np.asarray(self._flat[path], dtype=np.float32)

    def has(self, path: str) -> bool:
        return path in self._flat

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._flat if k.startswith(prefix))

    def unused(self) -> list[str]:
        return sorted(set(self._flat) - self._used)


def _component_names(official_cfg: dict) -> list[str]:
    head = official_cfg["text_decoder"]["name"]
    text = {"git": "git_decoder", "t5": "t5"}.get(head)
    if text is None:
        raise ConversionError(f"unsupported text decoder {head!r} (expected 'git' or 't5')")
    names = ["sam_image_encoder", "eva02_encoder", "feature_fusion", "prompt_encoder", "prompt_adapter", text,
             "point_head", "mask_adapter", "mask_decoder"]
    if official_cfg.get("box_decoder"):
        names.append("proposal_head")
    return names


def convert(flat_params: dict[str, np.ndarray], official_cfg: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Returns (our config dict, our tensors). Refuses official parameters nobody consumed."""
    from . import config as config_lib

    params = OfficialParams(flat_params)
    cfg = config_lib.from_official(official_cfg)
    tensors: dict[str, np.ndarray] = {}
    for name in _component_names(official_cfg):
        mod = importlib.import_module(f".{name}", __package__)
        cfg[name] = mod.config_from_official(official_cfg)
    for name in _component_names(official_cfg):
        mod = importlib.import_module(f".{name}", __package__)
        out = mod.convert_official(params, cfg)
        for k, v in out.items():
            if not k.startswith(name + "."):
                raise ConversionError(f"{name}: tensor {k!r} outside its prefix")
            if k in tensors:
                raise ConversionError(f"duplicate tensor {k!r}")
            tensors[k] = np.ascontiguousarray(v, dtype=np.float32)
    left = params.unused()
    if left:
        raise ConversionError(f"{len(left)} official parameters not understood, e.g. {left[:5]}")
    return cfg, tensors


MODEL_METADATA = {"format": "pt", "producer": "pixelllm_ref.convert"}


def save_safetensors(tensors: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None):
    """safetensors.numpy.save_file with a byte-stable header: the same inputs always give the same bytes. The
    writer keeps its metadata in a hash map, so a file with two or more metadata entries comes out in a different
    order from run to run; the `__metadata__` entries are re-serialised here in sorted key order, in place (same
    JSON form, same length, so the data offsets stand and the tensor data is not touched)."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        head = json.loads(raw.decode("utf-8"))  # dicts keep the file's order
        if "__metadata__" not in head:
            return
        head["__metadata__"] = dict(sorted(head["__metadata__"].items()))
        text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        orig = raw.rstrip(b" ")  # the writer pads the header with spaces to its alignment
        if len(text) != len(orig) or sorted(text) != sorted(orig):
            raise ConversionError(f"{path}: safetensors header does not re-serialise to the same JSON form")
        f.seek(8)
        f.write(text)


def write_model_dir(out_dir: str | Path, cfg: dict, tensors: dict[str, np.ndarray], tokenizer_json: str | None = None,
                    metadata: dict[str, str] | None = None):
    """config.json + model.safetensors (+ tokenizer.json); byte-stable for the same inputs. `metadata` replaces the
    default safetensors metadata (MODEL_METADATA)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    save_safetensors(tensors, out / "model.safetensors", MODEL_METADATA if metadata is None else metadata)
    if tokenizer_json is not None:
        (out / "tokenizer.json").write_text(tokenizer_json)
