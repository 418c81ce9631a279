"""Fusion of the backbone features the text branch sees (no parameters).

Follows the official `pixel_llm/modeling/utils.py::concat_visual_features(features, text_decoder_feature_key)`:
the key lists feature maps in order; with the '+' separator every map is resized to the largest token grid
(Python's max over the (h, w) tuples), with ',' to the grid of the first map; a map whose grid differs is resized
with `jax.image.resize(..., 'bicubic')` (Keys a=-0.5; antialiased when shrinking) and the maps are concatenated on
channels in key order. PixelLLM's configs use "git_visual_features+sam_visual_features": EVA02 (27x27xC_eva) first,
then the SAM neck output resized 24 -> 27 (x256), giving (B, 27, 27, C_eva + 256) NHWC.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import eva02_encoder, sam_image_encoder
from .convert import ConversionError, OfficialParams
from .jax_resize import weight_matrix

NAME = "feature_fusion"
_SOURCES = {"git_visual_features": "eva02_encoder", "sam_visual_features": "sam_image_encoder"}


def config_from_official(official_cfg: dict) -> dict:
    key = official_cfg.get("text_decoder_feature_key", "git_visual_features")
    sep = "+" if "+" in key else ","
    names = key.split(sep)
    unknown = [n for n in names if n not in _SOURCES]
    if unknown:
        raise ConversionError(f"feature_fusion: unsupported feature keys {unknown} in {key!r}")
    grids, channels = [], []
    for n in names:
        if n == "git_visual_features":
            sec = eva02_encoder.config_from_official(official_cfg)
            channels.append(sec["hidden_size"])
        else:
            sec = sam_image_encoder.config_from_official(official_cfg)
            channels.append(sec["output_channels"])
        grids.append((sec["image_size"] // sec["patch_size"],) * 2)
    target = max(grids) if sep == "+" else grids[0]
    return {
        "feature_keys": [_SOURCES[n] for n in names],   # our component names, in concat order
        "input_sizes": [g[0] for g in grids],
        "input_channels": channels,
        "output_size": target[0],
        "out_channels": int(sum(channels)),
        "resize_method": "bicubic",
    }


def convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]:
    del params, cfg  # no parameters
    return {}


class FeatureFusion(nn.Module):
    """forward(eva02_encoder=..., sam_image_encoder=...) NHWC maps -> (B, S, S, out_channels) NHWC."""

    def __init__(self, cfg: dict):
        super().__init__()
        sec = cfg[NAME]
        self.sec = sec
        self.keys = list(sec["feature_keys"])
        out = sec["output_size"]
        for key, size in zip(self.keys, sec["input_sizes"]):
            w = weight_matrix(size, out, sec["resize_method"])   # identity when size == out
            self.register_buffer(f"resize_{key}", torch.from_numpy(w).to(torch.float32), persistent=False)

    def forward(self, eva02_encoder: torch.Tensor | None = None,
                sam_image_encoder: torch.Tensor | None = None) -> torch.Tensor:
        given = {"eva02_encoder": eva02_encoder, "sam_image_encoder": sam_image_encoder}
        maps = []
        for key, size, ch in zip(self.keys, self.sec["input_sizes"], self.sec["input_channels"]):
            x = given[key]
            if x is None:
                raise ValueError(f"feature_fusion: missing input {key}")
            if tuple(x.shape[1:]) != (size, size, ch):
                raise ValueError(f"feature_fusion: {key} must be (B,{size},{size},{ch}), got {tuple(x.shape)}")
            if size != self.sec["output_size"]:
                w = getattr(self, f"resize_{key}")
                x = torch.einsum("ih,bhwc->biwc", w, x)
                x = torch.einsum("jw,biwc->bijc", w, x)
            maps.append(x)
        return torch.cat(maps, dim=-1)
