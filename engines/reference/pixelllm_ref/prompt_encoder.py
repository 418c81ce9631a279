"""SAM prompt encoder as PixelLLM uses it (box prompts only, no mask input).

Follows scenic `baselines/segment_anything/modeling/prompt_encoder.py` (PromptEncoder, PositionEmbeddingRandom) and the
way `pixel_llm/modeling/pixel_llm.py` drives it:
- `forward_prompt_encoder_adapter`: the sparse tokens the prompt adapter sees. A valid box (max coordinate > 0) gives
  its 2 corner embeddings followed by `no_mask_embed` copies up to the point-prompt length; an invalid (all-zero) box
  falls back to the points of `get_prompt_boxes_and_points` (box_points_per_side^2 grid corners, label 1) plus one
  padding point (label -1), exactly as the official code computes both and selects with `jnp.where`.
- `forward_mask_decode`: the 2 corner embeddings of the box that prompts the SAM mask decoder.
Coordinates are pixels and are normalised by the image size passed in (the official code passes the padded input
size of the feature branch, i.e. our `image_size`), after the +0.5 pixel-centre shift.

Parameter names follow Hugging Face `SamPromptEncoder` (`shared_embedding.positional_embedding`, `point_embed.i`,
`not_a_point_embed`, `no_mask_embed`). The mask-downscaling convs are absent: PixelLLM never feeds a mask prompt.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

NAME = "prompt_encoder"


def config_from_official(official_cfg: dict) -> dict:
    pe = official_cfg.get("prompt_encoder", {})
    if pe.get("name", "sam_prompt_encoder") != "sam_prompt_encoder":
        raise ValueError(f"prompt_encoder: unsupported official prompt encoder {pe.get('name')!r}")
    return {
        "embed_dim": int(pe.get("embed_dim", 256)),
        "num_point_embeddings": 4,
        # official PixelLlmFlaxModel defaults (box_points_per_side=2, box_point_with_offset=False)
        "box_points_per_side": int(official_cfg.get("box_points_per_side", 2)),
        "box_point_with_offset": bool(official_cfg.get("box_point_with_offset", False)),
        "prompt_use_box_rate": float(official_cfg.get("prompt_use_box_rate", 0.0)),
    }


def convert_official(params, cfg: dict) -> dict[str, np.ndarray]:
    p = "prompt_encoder/"
    out = {
        f"{NAME}.shared_embedding.positional_embedding": params.take(p + "pe_layer/positional_encoding_gaussian_matrix"),
        f"{NAME}.not_a_point_embed.weight": params.take(p + "not_a_point_embed.weight"),
        f"{NAME}.no_mask_embed.weight": params.take(p + "no_mask_embed.weight"),
    }
    for i in range(cfg[NAME]["num_point_embeddings"]):
        out[f"{NAME}.point_embed.{i}.weight"] = params.take(p + f"point_embeddings.{i}.weight")
    return out


class RandomFourierEmbedding(nn.Module):
    """PositionEmbeddingRandom: [sin, cos](2*pi * (2*xy - 1) @ G), xy in [0,1]. HF `SamPositionalEmbedding` names.

    G is never trained: the official code reads it through `jax.lax.stop_gradient` (so does `detach` here).
    """

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(2, num_pos_feats))

    def forward(self, coords01: torch.Tensor) -> torch.Tensor:
        x = (2.0 * coords01 - 1.0) @ self.positional_embedding.detach()
        x = (2.0 * math.pi) * x
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


def solid_grid(points_per_side: int, with_offset: bool) -> torch.Tensor:
    """utils.build_solid_grid: (n*n, 2) xy in [0,1], x fastest; n < 1 gives the 2 corners (0,0), (1,1)."""
    if points_per_side < 1:
        return torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    off = 1.0 / (2 * points_per_side) if with_offset else 0.0
    side = torch.linspace(off, 1 - off, points_per_side)
    ys, xs = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def boxes_to_points(boxes: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """utils.boxes_to_points: (..., 4) x0y0x1y1 -> (..., n, 2)."""
    xy = boxes[..., None, :2]
    wh = boxes[..., None, 2:] - boxes[..., None, :2]
    return xy + grid.to(boxes) * wh


class PromptEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg[NAME]
        d = c["embed_dim"]
        self.embed_dim = d
        self.box_points_per_side = c["box_points_per_side"]
        self.box_point_with_offset = c["box_point_with_offset"]
        self.use_box = c["prompt_use_box_rate"] > 0.0
        self.shared_embedding = RandomFourierEmbedding(d // 2)
        self.point_embed = nn.ModuleList([nn.Embedding(1, d) for _ in range(c["num_point_embeddings"])])
        self.not_a_point_embed = nn.Embedding(1, d)
        self.no_mask_embed = nn.Embedding(1, d)

    # --- PositionEmbeddingRandom -------------------------------------------------------------------------------
    def _pe_pixels(self, xy: torch.Tensor, image_size) -> torch.Tensor:
        h, w = image_size
        return self.shared_embedding(torch.stack([xy[..., 0] / w, xy[..., 1] / h], dim=-1))

    def get_dense_pe(self, h: int, w: int) -> torch.Tensor:
        """(h, w, embed_dim): the encoding of the cell centres ((j+0.5)/w, (i+0.5)/h)."""
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return self.shared_embedding(torch.stack([gx, gy], dim=-1))

    # --- PromptEncoder._embed_boxes / _embed_points --------------------------------------------------------------
    def embed_boxes(self, boxes: torch.Tensor, image_size) -> torch.Tensor:
        """(..., 4) pixel boxes -> (..., 2, embed_dim) corner embeddings (+0.5 centre shift, corner type embeds)."""
        corners = (boxes + 0.5).reshape(*boxes.shape[:-1], 2, 2)
        emb = self._pe_pixels(corners, image_size)
        return emb + torch.stack([self.point_embed[2].weight[0], self.point_embed[3].weight[0]], dim=0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, image_size, pad: bool = True) -> torch.Tensor:
        """(..., n, 2) pixels, labels (..., n) in {1, 0, -1} -> (..., n+pad, embed_dim)."""
        points = points + 0.5
        if pad:
            points = torch.cat([points, points.new_zeros(*points.shape[:-2], 1, 2)], dim=-2)
            labels = torch.cat([labels, labels.new_full((*labels.shape[:-1], 1), -1)], dim=-1)
        emb = self._pe_pixels(points, image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight[0], emb)
        emb = emb + (lab == 0).to(emb) * self.point_embed[0].weight[0]
        emb = emb + (lab == 1).to(emb) * self.point_embed[1].weight[0]
        return emb

    # --- pixel_llm.py forward_prompt_encoder_adapter (inference: labels all 1, box always used when valid) -------
    def sparse_for_adapter(self, boxes: torch.Tensor, image_size) -> torch.Tensor:
        """(B, P, 4) prompt boxes -> (B, P, n*n+1, embed_dim) sparse prompt tokens for the prompt adapter."""
        grid = solid_grid(self.box_points_per_side, self.box_point_with_offset)
        points = boxes_to_points(boxes, grid)
        labels = torch.ones(points.shape[:-1], dtype=torch.long, device=boxes.device)
        sparse = self.embed_points(points, labels, image_size, pad=True)
        if not self.use_box:
            return sparse
        n = sparse.shape[-2]
        if n < 2:
            raise ValueError("prompt_encoder: the point prompt must have at least 2 tokens to hold a box")
        box = self.embed_boxes(boxes, image_size)
        pad = self.no_mask_embed.weight[0].expand(*box.shape[:-2], n - 2, self.embed_dim)
        box = torch.cat([box, pad], dim=-2)
        valid = (boxes.amax(dim=-1) > 0)[..., None, None]
        return torch.where(valid, box, sparse)

    def dense_embedding(self) -> torch.Tensor:
        """The `no_mask_embed` (1, embed_dim) the official code adds to every image cell."""
        return self.no_mask_embed.weight
