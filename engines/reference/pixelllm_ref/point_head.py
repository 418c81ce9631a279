"""Point head: per-token corners from the text decoder's last hidden states.

Follows the official `pixel_llm/modeling/point_predictor.py` (MlpPointPredictor: optional pre-norm LayerNorm eps
1e-6, an MLP of `depth` Dense layers with exact GELU (or ReLU) between them, output num_points * (3 + num_classes)
split into (x, y) and logits, coords = (out + 1) / 2) and `pixel_llm.py` (forward_point_prediction /
decode_point: relative coords * (w, h) of the UNPADDED image, the size coming from the padding mask via
utils.get_image_shape), plus the box helpers `get_token_valid_mask` and `points_to_boxes` of `modeling/utils.py`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .convert import ConversionError, OfficialParams

_PREFIX = "point_predictor"


def config_from_official(official_cfg: dict) -> dict:
    pp = official_cfg.get("point_predictor") or {}
    if pp.get("name", "mlp_point_predictor") != "mlp_point_predictor":
        raise ConversionError(f"point_head: predictor {pp.get('name')!r} not supported")
    td = official_cfg["text_decoder"]
    in_dim = td.get("hidden_size") if td.get("name") == "git" else td.get("emb_dim")
    if in_dim is None:
        raise ConversionError("point_head: text hidden size unknown (text_decoder.hidden_size / emb_dim)")
    act = pp.get("mlp_activation", "relu")
    if act not in ("gelu", "relu"):
        raise ConversionError(f"point_head: activation {act!r} not supported")
    return {
        "input_dim": int(in_dim),
        "hidden_dim": int(pp.get("hidden_dim", 512)),
        "depth": int(pp.get("depth", 3)),
        "num_points": int(pp.get("num_output_points", 4)),
        "num_classes": int(pp.get("num_classes", 1)),
        "pre_norm": bool(pp.get("pre_norm", False)),
        "activation": act,          # gelu = exact (erf)
        "layer_norm_eps": 1e-6,
        "point_output_ignore": official_cfg.get("point_output_ignore", ""),
    }


def convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg["point_head"]
    out = {}
    if c["pre_norm"]:
        out["point_head.layer_norm.weight"] = params.take(f"{_PREFIX}/LayerNorm_0/scale")
        out["point_head.layer_norm.bias"] = params.take(f"{_PREFIX}/LayerNorm_0/bias")
    for i in range(c["depth"]):
        out[f"point_head.mlp.layers.{i}.weight"] = params.take(f"{_PREFIX}/mlp/layers.{i}/kernel").T
        out[f"point_head.mlp.layers.{i}.bias"] = params.take(f"{_PREFIX}/mlp/layers.{i}/bias")
    if params.has(f"{_PREFIX}/mlp/layers.{c['depth']}/kernel"):
        raise ConversionError("point_head: official MLP is deeper than the config says")
    return out


class _Mlp(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        dims = [c["input_dim"]] + [c["hidden_dim"]] * (c["depth"] - 1) + [c["num_points"] * (3 + c["num_classes"])]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.act = nn.GELU(approximate="none") if c["activation"] == "gelu" else nn.ReLU()

    def forward(self, x):
        for i, lyr in enumerate(self.layers):
            x = lyr(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class PointHead(nn.Module):
    """forward(feats (N, L, D), image_hw (N, 2) valid (h, w)) -> (coords (N, L, P, 2) absolute pixels of the
    unpadded image, logits (N, L, P, 1 + num_classes))."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg["point_head"]
        self.c = c
        self.layer_norm = nn.LayerNorm(c["input_dim"], eps=c["layer_norm_eps"]) if c["pre_norm"] else None
        self.mlp = _Mlp(c)

    def forward(self, feats: torch.Tensor, image_hw: torch.Tensor):
        x = self.layer_norm(feats) if self.layer_norm is not None else feats
        out = self.mlp(x)
        out = out.reshape(out.shape[:-1] + (self.c["num_points"], 3 + self.c["num_classes"]))
        rel = (out[..., :2] + 1) * 0.5
        return points_to_absolute(rel, image_hw), out[..., 2:]


def image_shape_from_padding_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """Official utils.get_image_shape: (B, H, W) 1 = valid -> (B, 2) float (valid h, valid w)."""
    m = padding_mask.to(torch.float32)
    return torch.stack([m.amax(dim=2).sum(dim=-1), m.amax(dim=1).sum(dim=-1)], dim=1)


def points_to_absolute(points: torch.Tensor, image_hw: torch.Tensor) -> torch.Tensor:
    """Official utils.points_to_absolute: (B, ..., 2) xy in [0,1] * (w, h) of each batch row."""
    scale = torch.stack([image_hw[:, 1], image_hw[:, 0]], dim=-1).to(points.dtype)
    return points * scale.reshape((points.shape[0],) + (1,) * (points.ndim - 2) + (2,))


def token_valid_mask(tokens: torch.Tensor, ignore: str, bos_id: int, eos_id: int) -> torch.Tensor:
    """Official utils.get_token_valid_mask over the last axis (e.g. '^end-1' = only the token before EOS)."""
    negate = ignore.startswith("^")
    kinds = (ignore[1:] if negate else ignore).split(",")
    valid = torch.ones_like(tokens, dtype=torch.bool)
    if "pad" in kinds:
        valid &= tokens > 0
    if "begin" in kinds:
        valid &= tokens != bos_id
    if "end" in kinds:
        valid &= tokens != eos_id
    if "end-1" in kinds:
        shifted = torch.cat([tokens[..., 1:], torch.zeros_like(tokens[..., :1])], dim=-1)
        valid &= shifted != eos_id
    if "text" in kinds:
        valid &= (tokens == bos_id) | (tokens == eos_id) | (tokens == 0)
    return ~valid if negate else valid


def boxes_from_points(coords: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Official decode_boxes_from_points / utils.points_to_boxes (no offset): min/max over the valid tokens' points.

    coords (B, P, L, K, 2), valid (B, P, L) -> boxes (B, P, 4) x0, y0, x1, y1. With no valid point the official
    fill values give x0 = max + 1 > x1 = min - 1 (kept as is).
    """
    b, p = coords.shape[:2]
    pts = coords.reshape(b, p, -1, 2)
    m = valid[..., None].expand(coords.shape[:-1]).reshape(b, p, -1)
    x, y = pts[..., 0], pts[..., 1]

    def lo(t):
        return torch.where(m, t, t.amax(dim=-1, keepdim=True) + 1).amin(dim=-1)

    def hi(t):
        return torch.where(m, t, t.amin(dim=-1, keepdim=True) - 1).amax(dim=-1)

    return torch.stack([lo(x), lo(y), hi(x), hi(y)], dim=-1)
