"""PixelLLM mask adapter: refines the SAM box-prompt tokens with the language model's states.

Follows scenic `pixel_llm/modeling/mask_adapter.py` (SamMaskAdaptor) as called by `pixel_llm.py`
`forward_mask_decode(sparse=box corner embeddings, visual_features=the visual tokens the LLM saw (after the optional
T5 projection), textual_features=the LLM's last hidden states)`:
    v = Linear(LN_1e-6(visual)) ; t = Linear(LN_1e-6(text))          (pre-norm MLPs, 1 layer, -> 256)
    out, _ = TwoWayTransformer(depth)(image=[v ; t] as a sequence, pe=0, tokens=2 learned output tokens)
    sparse' = tanh(alpha_output) * out + sparse                       (gating)
Quirk kept: there is NO padding mask: all L text positions (padding included) and all 32 visual tokens are attended.
Parameter names mirror the official ones; the transformer uses Hugging Face SamTwoWayTransformer names.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .mask_decoder import dense_params, ln_params, convert_two_way, put, run_two_way, two_way_transformer

NAME = "mask_adapter"


def _visual_dim(official_cfg: dict) -> int:
    vp = official_cfg.get("visual_project_layers")
    if vp and vp.get("name", "none") == "linear":
        return int(vp.get("emb_dim", 1024))
    return int(official_cfg["prompt_adapter"].get("output_dim", 1024))


def _text_dim(official_cfg: dict) -> int:
    td = official_cfg["text_decoder"]
    return int(td["emb_dim"] if td["name"] == "t5" else td["hidden_size"])


def config_from_official(official_cfg: dict) -> dict:
    ma = official_cfg.get("mask_adapter", {})
    if ma.get("name", "sam_mask_adapter") != "sam_mask_adapter":
        raise ValueError(f"mask_adapter: unsupported official mask adapter {ma.get('name')!r}")
    if not ma.get("input_projection", True):
        raise ValueError("mask_adapter: input_projection=False is not supported")
    return {
        "depth": int(ma.get("depth", 2)),
        "transformer_dim": int(ma.get("transformer_dim", 256)),
        "num_outputs": int(ma.get("num_outputs", 2)),
        "gating": bool(ma.get("gating", True)),
        "visual_dim": _visual_dim(official_cfg),
        "text_dim": _text_dim(official_cfg),
    }


def convert_official(params, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg[NAME]
    p = "mask_adapter"
    out = {f"{NAME}.output_tokens.weight": params.take(f"{p}/output_tokens.weight")}
    if c["gating"]:
        out[f"{NAME}.alpha_output.weight"] = params.take(f"{p}/alpha_output.weight")
    for m in ("visual_projection_mlp", "textual_projection_mlp"):
        put(out, f"{NAME}.{m}.layer_norm", ln_params(params, f"{p}/{m}/LayerNorm_0"))
        put(out, f"{NAME}.{m}.layers.0", dense_params(params, f"{p}/{m}/layers.0"))
    out.update(convert_two_way(params, f"{p}/transformer", f"{NAME}.transformer", c["depth"]))
    return out


class PreNormProjection(nn.Module):
    """mask_adapter.MLP(num_layers=1, pre_norm=True): LayerNorm(eps 1e-6) then one Linear."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_in, eps=1e-6)
        self.layers = nn.ModuleList([nn.Linear(d_in, d_out)])

    def forward(self, x):
        return self.layers[0](self.layer_norm(x))


class Table(nn.Module):
    """A bare (n, d) parameter stored as `<name>.weight` (the official `alpha_output.weight`)."""

    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, d))


class MaskAdapter(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg[NAME]
        d = c["transformer_dim"]
        self.num_outputs = c["num_outputs"]
        self.output_tokens = nn.Embedding(self.num_outputs, d)
        self.alpha_output = Table(self.num_outputs, d) if c["gating"] else None
        self.visual_projection_mlp = PreNormProjection(c["visual_dim"], d)
        self.textual_projection_mlp = PreNormProjection(c["text_dim"], d)
        self.transformer = two_way_transformer(d, c["depth"])

    def forward(self, sparse: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """sparse (B,P,O,256) box tokens, visual (B,P,Lv,Dv), text (B,P,Lt,Dt) -> (B,P,O,256)."""
        b, p = text.shape[:2]
        if visual.shape[:2] != (b, p) or sparse.shape[:2] != (b, p):
            raise ValueError(f"mask_adapter: batch/prompt dims differ: {sparse.shape}, {visual.shape}, {text.shape}")
        v = self.visual_projection_mlp(visual).reshape(b * p, visual.shape[2], -1)
        t = self.textual_projection_mlp(text).reshape(b * p, text.shape[2], -1)
        seq = torch.cat([v, t], dim=1)[:, :, None, :]  # a (L, 1) "image" for the two-way transformer
        tokens = self.output_tokens.weight[None].expand(b * p, -1, -1)
        out, _ = run_two_way(self.transformer, seq, torch.zeros_like(seq), tokens)
        out = out.reshape(b, p, self.num_outputs, -1)
        if self.alpha_output is not None:
            out = torch.tanh(self.alpha_output.weight) * out
        return out + sparse
