"""SAM mask decoder (and the SAM two-way transformer shared by the prompt and mask adapters).

Follows scenic `baselines/segment_anything/modeling/mask_decoder.py` + `transformer.py`, driven as in
`pixel_llm/modeling/pixel_llm.py` `forward_mask_decode` / `decode_mask`: image embeddings (the SAM branch, 24x24x256)
plus the `no_mask_embed` dense prompt, the dense random-Fourier PE of that grid, sparse tokens = the box corner
embeddings refined by the mask adapter; `multimask_output=False` (mask token 0 and its IoU), so the "best of the
returned masks" choice of `decode_mask` is over a single mask.

Built on Hugging Face `SamMaskDecoder` / `SamTwoWayTransformer`, whose math equals the official code: the official
transformer is fixed at 256 dims, 8 heads, MLP 2048 (ReLU), attention downsample 2 in cross attention, LayerNorm eps
1e-5 in the blocks and the final norm, 1e-6 in the upscaling LayerNorm; the upscaling uses exact GELU.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig
from transformers.models.sam.modeling_sam import SamMaskDecoder, SamTwoWayTransformer

NAME = "mask_decoder"


def two_way_config(dim: int, depth: int, num_heads: int = 8, mlp_dim: int = 2048, downsample: int = 2,
                   num_multimask_outputs: int = 3, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256):
    """HF config reproducing scenic `transformer.TwoWayTransformer(depth, embedding_dim)` defaults."""
    c = SamMaskDecoderConfig(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=num_heads, mlp_dim=mlp_dim,
                             hidden_act="relu", attention_downsample_rate=downsample, layer_norm_eps=1e-5,
                             num_multimask_outputs=num_multimask_outputs, iou_head_depth=iou_head_depth,
                             iou_head_hidden_dim=iou_head_hidden_dim)
    c._attn_implementation = "eager"
    return c


def two_way_transformer(dim: int, depth: int) -> SamTwoWayTransformer:
    return SamTwoWayTransformer(two_way_config(dim, depth))


def run_two_way(transformer: SamTwoWayTransformer, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Official `TwoWayTransformer(image (N,h,w,C), pe (N,h,w,C), tokens (N,T,C))` -> (tokens (N,T,C), keys (N,hw,C))."""
    n, h, w, c = image.shape
    img = image.permute(0, 3, 1, 2)
    pe = image_pe.expand(n, h, w, c).permute(0, 3, 1, 2)
    q, k = transformer(point_embeddings=tokens[:, None], image_embeddings=img, image_positional_embeddings=pe,
                       attention_similarity=None)
    return q[:, 0], k[:, 0]


def dense_params(params, path: str) -> dict[str, np.ndarray]:
    return {"weight": params.take(path + "/kernel").T, "bias": params.take(path + "/bias")}


def ln_params(params, path: str) -> dict[str, np.ndarray]:
    return {"weight": params.take(path + "/scale"), "bias": params.take(path + "/bias")}


def put(out: dict, prefix: str, tensors: dict[str, np.ndarray]):
    for k, v in tensors.items():
        out[f"{prefix}.{k}"] = v


def convert_two_way(params, src: str, dst: str, depth: int) -> dict[str, np.ndarray]:
    """Official TwoWayTransformer params under `src` (flax path) -> HF SamTwoWayTransformer names under `dst`."""
    out: dict[str, np.ndarray] = {}
    attns = ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
    for i in range(depth):
        s, d = f"{src}/layers.{i}", f"{dst}.layers.{i}"
        for a in attns:
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                put(out, f"{d}.{a}.{proj}", dense_params(params, f"{s}/{a}/{proj}"))
        for j in range(1, 5):
            put(out, f"{d}.layer_norm{j}", ln_params(params, f"{s}/norm{j}"))
        put(out, f"{d}.mlp.lin1", dense_params(params, f"{s}/mlp/lin1"))
        put(out, f"{d}.mlp.lin2", dense_params(params, f"{s}/mlp/lin2"))
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        put(out, f"{dst}.final_attn_token_to_image.{proj}", dense_params(params, f"{src}/final_attn_token_to_image/{proj}"))
    put(out, f"{dst}.layer_norm_final_attn", ln_params(params, f"{src}/norm_final_attn"))
    if params.has(f"{src}/layers.{depth}/norm1/scale"):
        raise ValueError(f"{src}: more transformer layers than the configured depth {depth}")
    return out


def count_layers(params, src: str) -> int:
    n = 0
    while params.has(f"{src}/layers.{n}/norm1/scale"):
        n += 1
    return n


def config_from_official(official_cfg: dict) -> dict:
    md = official_cfg.get("mask_decoder", {})
    if md.get("name", "sam_mask_decoder") != "sam_mask_decoder":
        raise ValueError(f"mask_decoder: unsupported official mask decoder {md.get('name')!r}")
    # scenic MaskDecoder defaults; its TwoWayTransformer is built with defaults (256 dims, depth 2) whatever the sizes.
    return {"transformer_dim": 256, "depth": 2, "num_multimask_outputs": 3, "iou_head_depth": 3,
            "iou_head_hidden_dim": 256, "multimask_output": False}


def convert_official(params, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg[NAME]
    p = "mask_decoder"
    out: dict[str, np.ndarray] = {
        f"{NAME}.iou_token.weight": params.take(f"{p}/iou_token.weight"),
        f"{NAME}.mask_tokens.weight": params.take(f"{p}/mask_tokens.weight"),
    }
    out.update(convert_two_way(params, f"{p}/transformer", f"{NAME}.transformer", c["depth"]))
    # flax ConvTranspose(transpose_kernel=True) kernel (kh, kw, out, in) -> torch ConvTranspose2d (in, out, kh, kw)
    for ours, theirs in (("upscale_conv1", "0"), ("upscale_conv2", "3")):
        out[f"{NAME}.{ours}.weight"] = params.take(f"{p}/output_upscaling/{theirs}/kernel").transpose(3, 2, 0, 1)
        out[f"{NAME}.{ours}.bias"] = params.take(f"{p}/output_upscaling/{theirs}/bias")
    put(out, f"{NAME}.upscale_layer_norm", ln_params(params, f"{p}/output_upscaling/1"))

    def ffn(src: str, dst: str, depth: int):
        names = ["proj_in"] + [f"layers.{j}" for j in range(depth - 2)] + ["proj_out"]
        for j, n in enumerate(names):
            put(out, f"{dst}.{n}", dense_params(params, f"{src}/layers.{j}"))

    for i in range(c["num_multimask_outputs"] + 1):
        ffn(f"{p}/output_hypernetworks_mlps.{i}", f"{NAME}.output_hypernetworks_mlps.{i}", 3)
    ffn(f"{p}/iou_prediction_head", f"{NAME}.iou_prediction_head", c["iou_head_depth"])
    return out


class MaskDecoder(SamMaskDecoder):
    """HF SamMaskDecoder with the official configuration; `predict` takes NHWC tensors like the rest of the port."""

    def __init__(self, cfg: dict):
        c = cfg[NAME]
        super().__init__(two_way_config(c["transformer_dim"], c["depth"], num_multimask_outputs=c["num_multimask_outputs"],
                                        iou_head_depth=c["iou_head_depth"],
                                        iou_head_hidden_dim=c["iou_head_hidden_dim"]))
        self.multimask_output = bool(c["multimask_output"])

    def predict(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B,h,w,C), pe (h,w,C), sparse (B,P,T,C), dense (C,) or (1,C) -> masks (B,P,M,4h,4w), iou (B,P,M).

        Each prompt gets its own copy of its image's embedding (the official code vmaps over images and repeats over
        prompts). With `multimask_output=False` M = 1 (mask token 0).
        """
        b, h, w, c = image_embeddings.shape
        p = sparse.shape[1]
        img = image_embeddings.permute(0, 3, 1, 2).repeat_interleave(p, dim=0)  # (B*P, C, h, w)
        pe = image_pe.permute(2, 0, 1)[None].expand(b * p, c, h, w)
        tokens = sparse.reshape(b * p, 1, *sparse.shape[2:])
        masks, iou = self.forward(img, pe, tokens, dense.reshape(1, c, 1, 1), multimask_output=self.multimask_output)
        return masks.reshape(b, p, *masks.shape[2:]), iou.reshape(b, p, -1)
