"""PixelLLM prompt adapter: fused image features + a box prompt -> the visual tokens the text decoder reads.

Follows scenic `pixel_llm/modeling/prompt_adapter.py` (PromptAdaptor.predict_outputs) as driven by `pixel_llm.py`
`forward_prompt_encoder_adapter` and `maybe_project_visual_feature` (+ `layers.py` LinearProjectLayers):
    sparse, dense(no_mask_embed) --prompt_embedding_projection_mlp--> transformer_dim   (only when 256 != dim)
    dense PE of the feature grid  --image_pe_projection_mlp-->        transformer_dim   (idem)
    src = image_projection_mlp(features) + dense
    hs, src = TwoWayTransformer(depth, dim)(src, pe, [32 learned output tokens ; sparse tokens])
    sparse tokens: output_hypernetworks_mlps[i](hs[:, i])   (one Linear per output token, no activation)
    dense tokens:  dense_output_mlp(src)                    (used when prompt_fuse_fn == "dense")
    T5 head only: visual_projection = Linear(emb_dim) + LayerNorm(eps 1e-5)
All "MLPs" of the official adapter have num_layers=1, i.e. a single Linear (named `<mlp>.layers.0` officially; here the
Linear itself carries the MLP's name). The transformer uses Hugging Face SamTwoWayTransformer names.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .mask_decoder import dense_params, ln_params, convert_two_way, count_layers, put, run_two_way, two_way_transformer

NAME = "prompt_adapter"


def config_from_official(official_cfg: dict) -> dict:
    pa = official_cfg.get("prompt_adapter", {})
    if pa.get("name", "sam_prompt_adapter") != "sam_prompt_adapter":
        raise ValueError(f"prompt_adapter: unsupported official prompt adapter {pa.get('name')!r}")
    fuse = official_cfg.get("prompt_fuse_fn", "sparse")
    if fuse not in ("sparse", "dense"):
        raise ValueError(f"prompt_adapter: unknown prompt_fuse_fn {fuse!r}")
    if "+" not in official_cfg.get("text_decoder_feature_key", ""):
        raise ValueError("prompt_adapter: only the fused 'git_visual_features+sam_visual_features' key is supported")
    vp = official_cfg.get("visual_project_layers") or {"name": "none"}
    if vp.get("name", "none") not in ("none", "linear"):
        raise ValueError(f"prompt_adapter: unknown visual_project_layers {vp.get('name')!r}")
    return {
        "depth": int(pa.get("depth", 2)),
        "input_embedding_dim": int(official_cfg.get("prompt_encoder", {}).get("embed_dim", 256)),
        "image_dim": int(official_cfg["git_backbone"]["embed_dim"]) + int(official_cfg["sam_backbone"].get("out_chans", 256)),
        "transformer_dim": int(pa.get("transformer_dim", 256)),
        "num_outputs": int(pa.get("num_outputs", 32)),
        "output_dim": int(pa.get("output_dim", 1024)),
        "prompt_fuse_fn": fuse,
        "visual_projection_dim": int(vp.get("emb_dim", 1024)) if vp.get("name") == "linear" else None,
        "visual_projection_ln": bool(vp.get("use_projection_ln", True)),
    }


def convert_official(params, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg[NAME]
    p = "prompt_adapter"
    out = {f"{NAME}.output_tokens.weight": params.take(f"{p}/output_tokens.weight")}
    mlps = ["image_projection_mlp", "dense_output_mlp"]
    if c["input_embedding_dim"] != c["transformer_dim"]:
        mlps += ["prompt_embedding_projection_mlp", "image_pe_projection_mlp"]
    mlps += [f"output_hypernetworks_mlps.{i}" for i in range(c["num_outputs"])]
    for m in mlps:
        put(out, f"{NAME}.{m}", dense_params(params, f"{p}/{m}/layers.0"))
    found = count_layers(params, f"{p}/transformer")
    if found != c["depth"]:
        raise ValueError(f"prompt_adapter: config depth {c['depth']} but the parameters hold {found} layers")
    out.update(convert_two_way(params, f"{p}/transformer", f"{NAME}.transformer", c["depth"]))
    if c["visual_projection_dim"] is not None:
        put(out, f"{NAME}.visual_projection.0", dense_params(params, "visual_project_layers/visual_projection.0"))
        if c["visual_projection_ln"]:
            put(out, f"{NAME}.visual_projection.1", ln_params(params, "visual_project_layers/visual_projection.1"))
    return out


class PromptAdapter(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg[NAME]
        d, e = c["transformer_dim"], c["input_embedding_dim"]
        self.num_outputs = c["num_outputs"]
        self.fuse = c["prompt_fuse_fn"]
        self.output_tokens = nn.Embedding(self.num_outputs, d)
        self.image_projection_mlp = nn.Linear(c["image_dim"], d)
        if e != d:
            self.prompt_embedding_projection_mlp = nn.Linear(e, d)
            self.image_pe_projection_mlp = nn.Linear(e, d)
        else:
            self.prompt_embedding_projection_mlp = None
            self.image_pe_projection_mlp = None
        self.transformer = two_way_transformer(d, c["depth"])
        self.output_hypernetworks_mlps = nn.ModuleList(nn.Linear(d, c["output_dim"]) for _ in range(self.num_outputs))
        self.dense_output_mlp = nn.Linear(d, c["output_dim"])
        if c["visual_projection_dim"] is not None:
            layers = [nn.Linear(c["output_dim"], c["visual_projection_dim"])]
            if c["visual_projection_ln"]:
                layers.append(nn.LayerNorm(c["visual_projection_dim"], eps=1e-5))
            self.visual_projection = nn.Sequential(*layers)
        else:
            self.visual_projection = None

    def forward(self, features: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor) -> torch.Tensor:
        """features (B,h,w,C_img), image_pe (h,w,E), sparse (B,P,T,E), dense (1,E) -> visual tokens (B,P,N,D).

        N = num_outputs (sparse fuse) or h*w (dense fuse); D = output_dim, or the T5 projection's width.
        """
        b, h, w, _ = features.shape
        p, t = sparse.shape[1], sparse.shape[2]
        if self.prompt_embedding_projection_mlp is not None:
            sparse = self.prompt_embedding_projection_mlp(sparse)
            dense = self.prompt_embedding_projection_mlp(dense)
        if self.image_pe_projection_mlp is not None:
            image_pe = self.image_pe_projection_mlp(image_pe)
        d = sparse.shape[-1]
        src = self.image_projection_mlp(features) + dense.reshape(1, 1, 1, d)
        src = src.repeat_interleave(p, dim=0)  # (B*P, h, w, d): every prompt sees its image
        tokens = torch.cat([self.output_tokens.weight[None].expand(b * p, -1, -1), sparse.reshape(b * p, t, d)], 1)
        hs, keys = run_two_way(self.transformer, src, image_pe[None], tokens)
        if self.fuse == "sparse":
            out = torch.stack([m(hs[:, i]) for i, m in enumerate(self.output_hypernetworks_mlps)], dim=1)
        else:
            out = self.dense_output_mlp(keys)
        out = out.reshape(b, p, *out.shape[1:])
        if self.visual_projection is not None:
            out = self.visual_projection(out)
        return out


def visual_tokens(prompt_encoder, prompt_adapter: PromptAdapter, features: torch.Tensor, boxes: torch.Tensor,
                  image_size) -> torch.Tensor:
    """pixel_llm.py forward_caption up to the text decoder: fused features (B,h,w,C) + prompt boxes (B,P,4) pixels
    (normalised by `image_size` = (H, W) of the padded input) -> visual tokens (B,P,N,D)."""
    sparse = prompt_encoder.sparse_for_adapter(boxes, image_size)
    pe = prompt_encoder.get_dense_pe(features.shape[1], features.shape[2])
    return prompt_adapter(features, pe, sparse, prompt_encoder.dense_embedding())
