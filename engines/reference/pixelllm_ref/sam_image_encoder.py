"""SAM ViT image encoder (the "sam_visual_features" branch).

Follows the official `baselines/segment_anything/modeling/image_encoder.py::ImageEncoderViT` as the PixelLLM builder
configures it (`pixel_llm/modeling/builder.py::get_image_encoder('sam_vit', sam_backbone_args)`): patch conv 16x16,
absolute position embedding, blocks of pre-LN (eps 1e-6) attention with decomposed relative positions (windowed
14x14 in `window_block_indexes`, global elsewhere), exact-erf GELU MLP (ratio 4), and the neck
conv1x1 (no bias) -> LayerNorm (flax default eps 1e-6) -> conv3x3 pad 1 (no bias) -> LayerNorm, to 256 channels.

That math equals Hugging Face `transformers` SamVisionEncoder for square inputs, so this module is built from its
layers (SamPatchEmbeddings, SamVisionLayer with eager attention, SamVisionNeck) and its parameter names
(`patch_embed.projection.weight`, `pos_embed`, `layers.{i}.attn.qkv.weight`, `layers.{i}.attn.rel_pos_h`,
`layers.{i}.layer_norm1.weight`, `layers.{i}.mlp.lin1.weight`, `neck.conv1.weight`, `neck.layer_norm1.weight` ...).

Resolution-dependent tables are resized at conversion, as the official forward pass does on every call:
`pos_embed` (pretrain grid, 64x64 for img_size 1024) -> image_size/16 with `jax.image.resize(..., 'bicubic')`
(antialiased), and the `rel_pos_h/w` tables of global blocks (2*64-1 = 127 rows) -> 2*grid-1 rows with
`jax.image.resize(..., 'linear')` (antialiased). Windowed blocks keep their 2*14-1 = 27-row tables.

Official quirk: `Block.window_partition` pads the height axis by pad_w and the width axis by pad_h. It is harmless
for square token grids (pad_h == pad_w), which is the only case PixelLLM runs (images padded to image_size x
image_size); this module refuses non-square inputs instead of guessing.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .convert import ConversionError, OfficialParams
from .jax_resize import resize_np
from .preprocess import SAM_PIXEL_MEAN, SAM_PIXEL_STD, preprocess_sam

NAME = "sam_image_encoder"

# ImageEncoderViT attributes that only matter for training or initialisation.
_IGNORED_KEYS = {"name", "drop_path_rate", "rel_pos_zero_init", "kernel_init", "freeze_vit_layer", "dtype",
                 "pretrain_img_size", "image_size"}
_REQUIRED_DEFAULTS = {"in_chans": 3, "beit_like_qkv_bias": False, "layer_scale_init_value": -1.0,
                      "use_ln_pre": False}


def config_from_official(official_cfg: dict) -> dict:
    """Our `sam_image_encoder` config section from the official `sam_backbone` section (ImageEncoderViT args)."""
    sam = dict(official_cfg.get("sam_backbone") or {})
    if sam.get("name", "sam_vit") != "sam_vit":
        raise ConversionError(f"sam_image_encoder: unsupported sam_backbone {sam.get('name')!r}")
    known = _IGNORED_KEYS | set(_REQUIRED_DEFAULTS) | {
        "img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "out_chans", "qkv_bias",
        "use_abs_pos", "use_rel_pos", "window_size", "window_block_indexes"}
    unknown = sorted(set(sam) - known)
    if unknown:
        raise ConversionError(f"sam_image_encoder: unknown sam_backbone options {unknown}")
    for key, required in _REQUIRED_DEFAULTS.items():
        if key in sam and sam[key] != required and not (key == "layer_scale_init_value" and sam[key] <= 0):
            raise ConversionError(f"sam_image_encoder: {key}={sam[key]!r} is not supported (only {required!r})")
    image_size = sam.get("image_size", (1024, 1024))  # official SAM_IMAGE_SIZE when sam_preprocess_args has none
    image_size = [int(v) for v in (image_size if isinstance(image_size, (list, tuple)) else (image_size,) * 2)]
    if image_size[0] != image_size[1]:
        raise ConversionError(f"sam_image_encoder: image_size must be square, got {image_size}")
    depth = int(sam.get("depth", 12))
    window_blocks = [int(i) for i in sam.get("window_block_indexes", (0, 1, 3, 4, 6, 7, 9, 10))]
    dim = int(sam.get("embed_dim", 768))
    return {
        "image_size": image_size[0],
        "patch_size": int(sam.get("patch_size", 16)),
        "pretrain_image_size": int(sam.get("img_size", 1024)),  # the pos_embed grid of the official parameters
        "hidden_size": dim,
        "num_hidden_layers": depth,
        "num_attention_heads": int(sam.get("num_heads", 12)),
        "mlp_dim": int(dim * float(sam.get("mlp_ratio", 4.0))),
        "output_channels": int(sam.get("out_chans", 256)),
        "qkv_bias": bool(sam.get("qkv_bias", True)),
        "use_abs_pos": bool(sam.get("use_abs_pos", True)),
        "use_rel_pos": bool(sam.get("use_rel_pos", True)),
        "window_size": int(sam.get("window_size", 14)),
        "global_attn_indexes": [i for i in range(depth) if i not in window_blocks],
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",  # exact (erf) GELU: Mlp uses nn.gelu(approximate=False)
        "pixel_mean": list(SAM_PIXEL_MEAN),
        "pixel_std": list(SAM_PIXEL_STD),
    }


def _hf_config(sec: dict):
    from transformers import SamVisionConfig

    hf = SamVisionConfig(
        hidden_size=sec["hidden_size"], output_channels=sec["output_channels"],
        num_hidden_layers=sec["num_hidden_layers"], num_attention_heads=sec["num_attention_heads"],
        num_channels=3, image_size=sec["image_size"], patch_size=sec["patch_size"], hidden_act=sec["hidden_act"],
        layer_norm_eps=sec["layer_norm_eps"], qkv_bias=sec["qkv_bias"], use_abs_pos=sec["use_abs_pos"],
        use_rel_pos=sec["use_rel_pos"], window_size=sec["window_size"],
        global_attn_indexes=list(sec["global_attn_indexes"]), mlp_dim=sec["mlp_dim"])
    hf._attn_implementation = "eager"
    return hf


class SamImageEncoder(nn.Module):
    """images (B,H,W,3) 0..255 + padding_mask (B,H,W) -> SAM features (B, H/16, W/16, output_channels) NHWC."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers.models.sam.modeling_sam import SamPatchEmbeddings, SamVisionLayer, SamVisionNeck

        sec = cfg[NAME]
        self.sec = sec
        hf = _hf_config(sec)
        grid = sec["image_size"] // sec["patch_size"]
        self.patch_embed = SamPatchEmbeddings(hf)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, sec["hidden_size"])) if sec["use_abs_pos"] else None
        self.layers = nn.ModuleList(
            SamVisionLayer(hf, window_size=0 if i in sec["global_attn_indexes"] else sec["window_size"])
            for i in range(sec["num_hidden_layers"]))
        self.neck = SamVisionNeck(hf)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B,H,W,3) -> (B,h,w,C) NHWC."""
        if x.shape[1] != x.shape[2]:
            raise ValueError(f"sam_image_encoder: square inputs only (official window padding swaps pad_h/pad_w), "
                             f"got {tuple(x.shape)}")
        h = self.patch_embed(x.permute(0, 3, 1, 2))
        if self.pos_embed is not None:
            h = h + self.pos_embed
        for layer in self.layers:
            h = layer(h)
        return self.neck(h).permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = preprocess_sam(images, padding_mask, (self.sec["image_size"],) * 2, self.sec["pixel_mean"],
                           self.sec["pixel_std"])
        return self.forward_normalized(x)


def _dense(params: OfficialParams, path: str) -> np.ndarray:
    return params.take(path + "/kernel").T


def _conv(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (kh,kw,in,out) -> (out,in,kh,kw)


def convert_official(params: OfficialParams, cfg: dict, prefix: str = "sam_backbone") -> dict[str, np.ndarray]:
    sec = cfg[NAME]
    grid = sec["image_size"] // sec["patch_size"]
    out = {
        "patch_embed.projection.weight": _conv(params.take(f"{prefix}/patch_embed.proj/kernel")),
        "patch_embed.projection.bias": params.take(f"{prefix}/patch_embed.proj/bias"),
    }
    if sec["use_abs_pos"]:
        pos = params.take(f"{prefix}/pos_embed")  # (1, G, G, C) at the pretrain grid
        if pos.ndim != 4 or pos.shape[1] != pos.shape[2]:
            raise ConversionError(f"sam_image_encoder: pos_embed shape {pos.shape} is not (1,G,G,C)")
        out["pos_embed"] = resize_np(pos, (1, grid, grid, pos.shape[3]), "bicubic")
    head_dim = sec["hidden_size"] // sec["num_attention_heads"]
    for i in range(sec["num_hidden_layers"]):
        src, dst = f"{prefix}/blocks.{i}", f"layers.{i}"
        for a, b in (("norm1", "layer_norm1"), ("norm2", "layer_norm2")):
            out[f"{dst}.{b}.weight"] = params.take(f"{src}/{a}/scale")
            out[f"{dst}.{b}.bias"] = params.take(f"{src}/{a}/bias")
        out[f"{dst}.attn.qkv.weight"] = _dense(params, f"{src}/attn/qkv")
        if sec["qkv_bias"]:
            out[f"{dst}.attn.qkv.bias"] = params.take(f"{src}/attn/qkv/bias")
        out[f"{dst}.attn.proj.weight"] = _dense(params, f"{src}/attn/proj")
        out[f"{dst}.attn.proj.bias"] = params.take(f"{src}/attn/proj/bias")
        if sec["use_rel_pos"]:
            rows = 2 * (grid if i in sec["global_attn_indexes"] else sec["window_size"]) - 1
            for axis in ("h", "w"):
                table = params.take(f"{src}/attn/rel_pos_{axis}")
                if table.shape[1] != head_dim:
                    raise ConversionError(f"sam_image_encoder: {src}/attn/rel_pos_{axis} {table.shape} has head "
                                          f"dim != {head_dim}")
                out[f"{dst}.attn.rel_pos_{axis}"] = resize_np(table, (rows, head_dim), "linear")
        for lin in ("lin1", "lin2"):
            out[f"{dst}.mlp.{lin}.weight"] = _dense(params, f"{src}/mlp/{lin}")
            out[f"{dst}.mlp.{lin}.bias"] = params.take(f"{src}/mlp/{lin}/bias")
    out["neck.conv1.weight"] = _conv(params.take(f"{prefix}/neck/0/kernel"))
    out["neck.layer_norm1.weight"] = params.take(f"{prefix}/neck/1/scale")
    out["neck.layer_norm1.bias"] = params.take(f"{prefix}/neck/1/bias")
    out["neck.conv2.weight"] = _conv(params.take(f"{prefix}/neck/2/kernel"))
    out["neck.layer_norm2.weight"] = params.take(f"{prefix}/neck/3/scale")
    out["neck.layer_norm2.bias"] = params.take(f"{prefix}/neck/3/bias")
    return {f"{NAME}.{k}": np.asarray(v, dtype=np.float32) for k, v in out.items()}
