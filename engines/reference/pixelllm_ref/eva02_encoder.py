"""EVA02 ViT image encoder (the "git_visual_features" branch).

Follows the official `pixel_llm/modeling/eva02_vit.py::ViT` (built by `builder.get_image_encoder('eva02_vit', ...)`)
and `pixel_llm.py::forward_backbones`, which drops the class token and reshapes to the token grid:
- patch conv (patch 14, with bias), a class token prepended, absolute position embedding (cls row kept, the
  pretrain 16x16 grid resized to the token grid with `jax.image.resize(..., 'bicubic')`, done here at conversion);
- optional `ln_pre`; blocks of: LayerNorm(eps 1e-6) -> attention with separate q/k/v projections (no bias) plus
  learned q and v biases, 2-D rotary embedding on every token except the class token, scale head_dim**-0.5
  -> proj; residual; LayerNorm(eps 1e-6) -> SwiGLU: silu(w1 x) * (w2 x) -> ffn_ln (LayerNorm eps 1e-5) -> w3;
  residual;
- `ln_post` LayerNorm (flax default eps 1e-6) when use_ln_post.
Rotary embedding (`vision_rotary_embedding_fast`): dim = head_dim / 2, theta 10000, frequencies
1 / theta^(2k/dim) repeated pairwise, positions t = arange(g) / g * g with g = image_size // patch (so the pretrain
and fine-tune lengths coincide); the first head_dim/2 channels rotate with the row index, the last with the column
index; rotate_half pairs adjacent channels (x0, x1) -> (-x1, x0).
Parameter names follow the official module tree (EVA-02's own names), under the `eva02_encoder.` prefix.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .convert import ConversionError, OfficialParams
from .jax_resize import resize_np
from .preprocess import EVA02_PIXEL_MEAN, EVA02_PIXEL_STD, preprocess_eva02

NAME = "eva02_encoder"

_IGNORED_KEYS = {"name", "image_size", "drop_path_rate", "kernel_init", "freeze_vit_layer", "dtype",
                 "token_mask_probability", "window_block_indexes", "use_rel_pos", "stop_grad_conv1"}
_KNOWN_KEYS = {"patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "use_abs_pos",
               "pretrain_img_size", "pretrain_use_cls_token", "use_ln_pre", "use_ln_post", "pe_bias"}


def config_from_official(official_cfg: dict) -> dict:
    """Our `eva02_encoder` section from the official `git_backbone` section (eva02_vit.ViT args)."""
    git = dict(official_cfg.get("git_backbone") or {})
    if git.get("name") != "eva02_vit":
        raise ConversionError(f"eva02_encoder: git_backbone must be 'eva02_vit', got {git.get('name')!r}")
    unknown = sorted(set(git) - _IGNORED_KEYS - _KNOWN_KEYS)
    if unknown:
        raise ConversionError(f"eva02_encoder: unknown git_backbone options {unknown}")
    if int(git.get("in_chans", 3)) != 3:
        raise ConversionError("eva02_encoder: in_chans must be 3")
    if not git.get("pretrain_use_cls_token", True):
        raise ConversionError("eva02_encoder: pretrain_use_cls_token=False is not supported (the official "
                              "_get_abs_pos then mixes a grid row into the class position)")
    image_size = git.get("image_size", (384, 384))  # official GIT_IMAGE_SIZE when git_preprocess_args has none
    image_size = [int(v) for v in (image_size if isinstance(image_size, (list, tuple)) else (image_size,) * 2)]
    if image_size[0] != image_size[1]:
        raise ConversionError(f"eva02_encoder: image_size must be square, got {image_size}")
    dim = int(git.get("embed_dim", 768))
    heads = int(git.get("num_heads", 12))
    if dim % heads or (dim // heads) % 4:
        raise ConversionError(f"eva02_encoder: head dim {dim}/{heads} must be a multiple of 4 for 2-D RoPE")
    return {
        "image_size": image_size[0],
        "patch_size": int(git.get("patch_size", 16)),
        "pretrain_image_size": int(git.get("pretrain_img_size", 224)),
        "hidden_size": dim,
        "num_hidden_layers": int(git.get("depth", 12)),
        "num_attention_heads": heads,
        "mlp_hidden_size": int(dim * float(git.get("mlp_ratio", 4.0))),
        "use_abs_pos": bool(git.get("use_abs_pos", True)),
        "use_ln_pre": bool(git.get("use_ln_pre", False)),
        "use_ln_post": bool(git.get("use_ln_post", False)),
        "patch_bias": bool(git.get("pe_bias", True)),
        "layer_norm_eps": 1e-6,
        "ffn_layer_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "pixel_mean": list(EVA02_PIXEL_MEAN),
        "pixel_std": list(EVA02_PIXEL_STD),
    }


def rope_tables(grid: int, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (grid*grid, head_dim) float32, computed in float32 like the official jax code."""
    dim = head_dim // 2
    exponent = torch.arange(0, dim, 2, dtype=torch.int64)[: dim // 2].to(torch.float32) / dim
    freqs = 1.0 / torch.pow(torch.tensor(theta, dtype=torch.float32), exponent)
    t = torch.arange(grid, dtype=torch.float32) / grid * grid
    f = torch.repeat_interleave(t[:, None] * freqs[None, :], 2, dim=-1)           # (g, dim)
    both = torch.cat([f[:, None, :].expand(grid, grid, dim), f[None, :, :].expand(grid, grid, dim)], dim=-1)
    both = both.reshape(grid * grid, head_dim)
    return torch.cos(both), torch.sin(both)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class Eva02Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        split = lambda t: t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q = split(self.q_proj(x) + self.q_bias)
        k = split(self.k_proj(x))
        v = split(self.v_proj(x) + self.v_bias)
        rope = lambda t: torch.cat([t[:, :, :1], t[:, :, 1:] * cos + _rotate_half(t[:, :, 1:]) * sin], dim=2)  # noqa
        q, k = rope(q), rope(k)
        attn = torch.softmax((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Eva02SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, eps: float):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Eva02Block(nn.Module):
    def __init__(self, sec: dict):
        super().__init__()
        dim = sec["hidden_size"]
        self.norm1 = nn.LayerNorm(dim, eps=sec["layer_norm_eps"])
        self.attn = Eva02Attention(dim, sec["num_attention_heads"])
        self.norm2 = nn.LayerNorm(dim, eps=sec["layer_norm_eps"])
        self.mlp = Eva02SwiGLU(dim, sec["mlp_hidden_size"], sec["ffn_layer_norm_eps"])

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class Eva02Encoder(nn.Module):
    """images (B,H,W,3) 0..255 + padding_mask (B,H,W) -> EVA02 features (B, H/14, W/14, C) NHWC (cls dropped)."""

    def __init__(self, cfg: dict):
        super().__init__()
        sec = cfg[NAME]
        self.sec = sec
        dim, patch = sec["hidden_size"], sec["patch_size"]
        self.grid = sec["image_size"] // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch, bias=sec["patch_bias"])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, dim)) if sec["use_abs_pos"] else None
        self.ln_pre = nn.LayerNorm(dim, eps=1e-6) if sec["use_ln_pre"] else None
        self.blocks = nn.ModuleList(Eva02Block(sec) for _ in range(sec["num_hidden_layers"]))
        self.ln_post = nn.LayerNorm(dim, eps=1e-6) if sec["use_ln_post"] else None
        cos, sin = rope_tables(self.grid, dim // sec["num_attention_heads"], sec["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B,H,W,3) -> (B,g,g,C) NHWC."""
        if x.shape[1] != self.sec["image_size"] or x.shape[2] != self.sec["image_size"]:
            raise ValueError(f"eva02_encoder: expected {self.sec['image_size']}^2 images, got {tuple(x.shape)}")
        h = self.patch_embed.proj(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)   # (B, g*g, C)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        if self.pos_embed is not None:
            h = h + self.pos_embed
        if self.ln_pre is not None:
            h = self.ln_pre(h)
        for blk in self.blocks:
            h = blk(h, self.rope_cos, self.rope_sin)
        if self.ln_post is not None:
            h = self.ln_post(h)
        return h[:, 1:].reshape(h.shape[0], self.grid, self.grid, h.shape[-1])

    def forward(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = preprocess_eva02(images, padding_mask, (self.sec["image_size"],) * 2, self.sec["pixel_mean"],
                             self.sec["pixel_std"])
        return self.forward_normalized(x)


def _ln(params: OfficialParams, src: str, out: dict, dst: str):
    out[f"{dst}.weight"] = params.take(f"{src}/scale")
    out[f"{dst}.bias"] = params.take(f"{src}/bias")


def _linear(params: OfficialParams, src: str, out: dict, dst: str, bias: bool = True):
    out[f"{dst}.weight"] = params.take(f"{src}/kernel").T
    if bias:
        out[f"{dst}.bias"] = params.take(f"{src}/bias")


def convert_official(params: OfficialParams, cfg: dict, prefix: str = "git_backbone") -> dict[str, np.ndarray]:
    sec = cfg[NAME]
    grid = sec["image_size"] // sec["patch_size"]
    out: dict[str, np.ndarray] = {}
    out["patch_embed.proj.weight"] = params.take(f"{prefix}/patch_embed.proj/kernel").transpose(3, 2, 0, 1)
    if sec["patch_bias"]:
        out["patch_embed.proj.bias"] = params.take(f"{prefix}/patch_embed.proj/bias")
    out["cls_token"] = params.take(f"{prefix}/cls_token")
    if sec["use_abs_pos"]:
        pos = params.take(f"{prefix}/pos_embed")           # (1, 1 + G*G, C), row 0 = class token
        g = int(round((pos.shape[1] - 1) ** 0.5))
        if pos.ndim != 3 or g * g != pos.shape[1] - 1:
            raise ConversionError(f"eva02_encoder: pos_embed shape {pos.shape} is not (1, 1+G*G, C)")
        grid_pos = pos[:, 1:].reshape(1, g, g, -1)
        grid_pos = resize_np(grid_pos, (1, grid, grid, grid_pos.shape[-1]), "bicubic")
        out["pos_embed"] = np.concatenate([pos[:, :1], grid_pos.reshape(1, grid * grid, -1)], axis=1)
    if sec["use_ln_pre"]:
        _ln(params, f"{prefix}/ln_pre", out, "ln_pre")
    for i in range(sec["num_hidden_layers"]):
        src, dst = f"{prefix}/blocks.{i}", f"blocks.{i}"
        _ln(params, f"{src}/norm1", out, f"{dst}.norm1")
        _ln(params, f"{src}/norm2", out, f"{dst}.norm2")
        for p in ("q_proj", "k_proj", "v_proj"):
            _linear(params, f"{src}/attn/{p}", out, f"{dst}.attn.{p}", bias=False)
        out[f"{dst}.attn.q_bias"] = params.take(f"{src}/attn/q_bias")
        out[f"{dst}.attn.v_bias"] = params.take(f"{src}/attn/v_bias")
        _linear(params, f"{src}/attn/proj", out, f"{dst}.attn.proj")
        for p in ("w1", "w2", "w3"):
            _linear(params, f"{src}/mlp/{p}", out, f"{dst}.mlp.{p}")
        _ln(params, f"{src}/mlp/ffn_ln", out, f"{dst}.mlp.ffn_ln")
    if sec["use_ln_post"]:
        _ln(params, f"{prefix}/ln_post", out, "ln_post")
    return {f"{NAME}.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
