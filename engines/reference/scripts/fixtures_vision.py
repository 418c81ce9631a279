"""Fixtures for the native image side (preprocess, sam_image_encoder, eva02_encoder, feature_fusion).

For each golden case writes into `build/fixtures/golden/<case>/`:
- the converted model directory (`config.json`, `model.safetensors`) from `pixelllm_ref.convert`;
- `vision.safetensors` with the reference inputs/outputs of the image components:
    images (1,S,S,3) float 0..255, padding_mask (1,S,S), valid_hw (2,) [valid height, valid width],
    ref_sam_input / ref_eva02_input   normalised branch inputs (1,S,S,3)
    ref_sam_features (1,24,24,256)    reference SamImageEncoder output (NHWC)
    ref_eva02_features (1,27,27,C)    reference Eva02Encoder output (NHWC)
    ref_fused_features (1,27,27,C+256) reference FeatureFusion of the two
    golden_sam_features, golden_eva02_features  the official outputs (the final judge)

Usage: .venv/bin/python scripts/fixtures_vision.py [--out DIR] [--cases bert_s0_h384,...]
Run from engines/reference (the repo root is found from this file).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

from pixelllm_ref import convert, eva02_encoder, feature_fusion, sam_image_encoder  # noqa: E402
from pixelllm_ref.golden import fixture_main, load_golden, rel_l2  # noqa: E402


def _load(module, cls, cfg, tensors):
    model = cls(cfg).eval()
    prefix = module.NAME + "."
    own = {k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(own, strict=True)
    return model


def valid_hw(padding_mask: np.ndarray) -> np.ndarray:
    """(valid height, valid width) as the official utils.get_image_shape computes it; the valid region must be
    the top-left rectangle (the layout the native preprocess assumes)."""
    m = padding_mask[0] > 0.5
    h = int(m.any(axis=1).sum())
    w = int(m.any(axis=0).sum())
    expect = np.zeros_like(m)
    expect[:h, :w] = True
    if not np.array_equal(m, expect):
        raise ValueError("padding_mask is not a top-left rectangle")
    return np.array([h, w], dtype=np.float32)


def write_case(name: str, out_root: Path) -> None:
    from safetensors.numpy import save_file

    g = load_golden(name)
    cfg, tensors = convert.convert(g.params, g.official_config)
    out = out_root / name
    convert.write_model_dir(out, cfg, tensors)

    images = torch.from_numpy(g.inputs["images"].astype(np.float32))
    mask = torch.from_numpy(g.inputs["padding_mask"].astype(np.float32))
    sam = _load(sam_image_encoder, sam_image_encoder.SamImageEncoder, cfg, tensors)
    eva = _load(eva02_encoder, eva02_encoder.Eva02Encoder, cfg, tensors)
    fusion = feature_fusion.FeatureFusion(cfg).eval()
    with torch.no_grad():
        sam_sec, eva_sec = cfg[sam_image_encoder.NAME], cfg[eva02_encoder.NAME]
        sam_in = sam_image_encoder.preprocess_sam(images, mask, (sam_sec["image_size"],) * 2,
                                                  sam_sec["pixel_mean"], sam_sec["pixel_std"])
        eva_in = eva02_encoder.preprocess_eva02(images, mask, (eva_sec["image_size"],) * 2,
                                                eva_sec["pixel_mean"], eva_sec["pixel_std"])
        sam_out = sam.forward_normalized(sam_in)
        eva_out = eva.forward_normalized(eva_in)
        fused = fusion(eva02_encoder=eva_out, sam_image_encoder=sam_out)
    arrays = {
        "images": g.inputs["images"].astype(np.float32),
        "padding_mask": g.inputs["padding_mask"].astype(np.float32),
        "valid_hw": valid_hw(g.inputs["padding_mask"]),
        "ref_sam_input": sam_in.numpy(),
        "ref_eva02_input": eva_in.numpy(),
        "ref_sam_features": sam_out.numpy(),
        "ref_eva02_features": eva_out.numpy(),
        "ref_fused_features": fused.numpy(),
        "golden_sam_features": g.outputs["sam_visual_features"].astype(np.float32),
        "golden_eva02_features": g.outputs["git_visual_features"].astype(np.float32),
    }
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(out / "vision.safetensors"),
              metadata={"producer": "engines/reference/scripts/fixtures_vision.py", "case": name})
    print(f"{name}: wrote {out}  ref-vs-golden sam {rel_l2(arrays['ref_sam_features'], arrays['golden_sam_features']):.2e}"
          f"  eva02 {rel_l2(arrays['ref_eva02_features'], arrays['golden_eva02_features']):.2e}")


def main(argv=None) -> int:
    return fixture_main(write_case, __doc__, ROOT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
