"""Architecture configs (engines/configs/*.json) and an analytic parameter count from the official module shapes.

Every config here is first written with the OFFICIAL config keys (the schema of ../shared/golden/tiny-*.json, i.e.
config.model.* of the official configs) and then turned into our config.json by the converter's config path
(`config.from_official` + each component's `config_from_official`), so there is one source of truth for sizes.

  official-bert  configs/bert/pixel_llm_bert_refseg.py: EVA02-L (1024 x 24, patch 14, mlp 8/3), SAM ViT-H
                 (1280 x 32, global blocks 7/15/23/31), prompt adapter 6 x 512 -> 1024, GIT/BERT-base decoder
                 (768 x 6, 12 heads, 1024 positions, vocab 30522, [CLS]=101/[SEP]=102), point MLP depth 4, 384 px.
  official-t5    configs/t5/pixel_llm_t5_refseg.py: same image side, Flan-T5-XL (2048, 24+24 layers, 32 heads x 64,
                 mlp 5120, vocab 32128, bos 0 / eos 1, LoRA r=32 on q,v merged at conversion), visual projection
                 1024 -> 2048 (+LN).
  demo           GIT head sized to train on 2 CPU cores: 224 px (EVA02 grid 16, SAM grid 14), EVA02 128 x 4,
                 SAM 128 x 4 (neck 256: the SAM prompt encoder / mask decoder are fixed at 256), prompt adapter
                 2 x 128 -> 256, decoder 256 x 3, vocab = the demo tokenizer; then DEMO_OVERRIDES and
                 DEMO_FUSED_GRID (below): dense visual tokens (the official prompt_fuse_fn "dense") on a 14 x 14
                 fused grid.
  tiny-git/-t5   ../shared/golden/tiny-{bert,t5}.json (the golden sizes).
Released sizes come from the official configs and module defaults (modeling/*.py); see official_param_count.
"""
from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

from . import config as config_lib
from . import convert

SAM_H_GLOBAL = (7, 15, 23, 31)
_IMAGE = [384, 384]
_COMMON = {
    "git_backbone": {"name": "eva02_vit", "embed_dim": 1024, "depth": 24, "num_heads": 16, "patch_size": 14,
                     "mlp_ratio": 4 * 2 / 3, "use_ln_post": True, "image_size": _IMAGE},
    "sam_backbone": {"name": "sam_vit", "embed_dim": 1280, "depth": 32, "num_heads": 16,
                     "window_block_indexes": [i for i in range(32) if i not in SAM_H_GLOBAL], "out_chans": 256,
                     "image_size": _IMAGE},
    "text_decoder_feature_key": "git_visual_features+sam_visual_features",
    "prompt_encoder": {"name": "sam_prompt_encoder", "embed_dim": 256},
    "prompt_adapter": {"name": "sam_prompt_adapter", "depth": 6, "transformer_dim": 512, "output_dim": 1024,
                       "num_outputs": 32},
    "prompt_fuse_fn": "sparse",
    "prompt_use_box_rate": 1.0,
    "mask_decoder": {"name": "sam_mask_decoder"},
    "mask_adapter": {"name": "sam_mask_adapter", "gating": True, "depth": 2},
    "max_caption_length": 40,
    "decode_method": "beam",
    "decode_beam_size": 3,
    "mult_caption_score": True,
    "point_predictor": {"name": "mlp_point_predictor", "num_output_points": 2, "pre_norm": True,
                        "mlp_activation": "gelu", "depth": 4, "hidden_dim": 512},
    "point_output_ignore": "^end-1",
    "use_points_as_det": True,
    "point_loss_type": "l1_nonzero",
    "point_loss_weight": 0.1,
    "mask_loss_weight": 1.0,
}
OFFICIAL_BERT = {"source": "configs/bert/pixel_llm_bert_refseg.py (released sizes)", **copy.deepcopy(_COMMON),
                 "text_decoder": {"name": "git", "hidden_size": 768, "num_heads": 12, "num_hidden_layers": 6,
                                  "max_caption_length": 1024},  # TransformerDecoderTextualHead defaults
                 "vocab_size": 30522, "begin_token_id": 101, "end_token_id": 102}
OFFICIAL_T5 = {"source": "configs/t5/pixel_llm_t5_refseg.py (released sizes)", **copy.deepcopy(_COMMON),
               # official name 'flan_t5_xl'; written as 't5' + explicit Flan-T5-XL sizes (what the golden tiny-t5 does),
               # because config.from_official / convert._component_names accept only 'git' | 't5'
               "text_decoder": {"name": "t5", "vocab_size": 32128, "emb_dim": 2048, "num_heads": 32,
                                "num_encoder_layers": 24, "num_decoder_layers": 24, "head_dim": 64, "mlp_dim": 5120,
                                "mlp_activations": ["gelu", "linear"], "logits_via_embedding": False,
                                "encoder_lora_rank": 32, "decoder_lora_rank": 32,
                                "encoder_lora_scale": 2, "decoder_lora_scale": 2, "encoder_lora_modules": "q,v",
                                "decoder_lora_modules": "q,v"},
               "visual_project_layers": {"name": "linear", "emb_dim": 2048},
               "vocab_size": 32128, "begin_token_id": 0, "end_token_id": 1}
# Flan-T5 sizes (t5x): emb, heads, enc layers, dec layers, head dim, mlp
T5_SIZES = {"flan_t5_small": (512, 6, 8, 8, 64, 1024), "flan_t5_base": (768, 12, 12, 12, 64, 2048),
            "flan_t5_large": (1024, 16, 24, 24, 64, 2816), "flan_t5_xl": (2048, 32, 24, 24, 64, 5120),
            "flan_t5_xxl": (4096, 64, 24, 24, 64, 10240)}


def demo_official() -> dict:
    """The demo architecture in official keys (vocab from the demo tokenizer)."""
    from . import tokenizer

    img = [224, 224]
    cfg = copy.deepcopy(_COMMON)
    cfg.update({
        "source": "pixelllm demo (synthetic shapes world), GIT head",
        "git_backbone": {"name": "eva02_vit", "embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 14,
                         "mlp_ratio": 4 * 2 / 3, "use_ln_post": True, "image_size": img, "pretrain_img_size": 224},
        "sam_backbone": {"name": "sam_vit", "embed_dim": 128, "depth": 4, "num_heads": 4,
                         "window_block_indexes": [0, 1, 2], "out_chans": 256, "image_size": img, "img_size": 224},
        "prompt_adapter": {"name": "sam_prompt_adapter", "depth": 2, "transformer_dim": 128, "output_dim": 256,
                           "num_outputs": 32},
        "mask_adapter": {"name": "sam_mask_adapter", "gating": True, "depth": 1},
        "text_decoder": {"name": "git", "hidden_size": 256, "num_heads": 4, "num_hidden_layers": 3,
                         "max_caption_length": 128},
        "point_predictor": {"name": "mlp_point_predictor", "num_output_points": 2, "pre_norm": True,
                            "mlp_activation": "gelu", "depth": 4, "hidden_dim": 256},
        "vocab_size": tokenizer.vocab_size(), "begin_token_id": tokenizer.BOS_ID, "end_token_id": tokenizer.EOS_ID,
        "max_caption_length": 96, "decode_method": "greedy", "decode_beam_size": 1,
        # one-level class-agnostic CenterNet proposals on the fused 16x16 map (proposal_head.py); NMS 0.5 as the
        # official final (ROI) NMS, since this head has no second stage
        "box_decoder": {"name": "centernet_proposal", "num_classes": -1, "channels": 128, "num_convs": 2,
                        "iou_thresh": 0.5, "score_thresh": 0.05, "pre_nms_topk_test": 100,
                        "post_nms_topk_test": 16},
    })
    return cfg


def tiny_official(head: str) -> dict:
    from .golden import golden_dir

    return json.loads((golden_dir() / f"tiny-{head}.json").read_text())


def official_configs() -> dict[str, dict]:
    """name of engines/configs/<name>.json -> official-keys config."""
    return {"official-bert": OFFICIAL_BERT, "official-t5": OFFICIAL_T5, "demo": demo_official(),
            "tiny-git": tiny_official("bert"), "tiny-t5": tiny_official("t5")}


def our_config(official_cfg: dict) -> dict:
    """Our config.json from official keys: exactly the converter's config path (convert.convert, no tensors)."""
    cfg = config_lib.from_official(official_cfg)
    for name in convert._component_names(official_cfg):
        cfg[name] = importlib.import_module(f".{name}", __package__).config_from_official(official_cfg)
    return cfg


# What the demo (engines/configs/demo.json) changes after the official-keys path, to learn on 2 CPU cores:
#  * prompt_fuse_fn "dense" (an official option, pixel_llm.py): the text decoder reads every cell of the prompt
#    adapter's image map instead of its 32 learned output tokens (those collapse to prompt-independent summaries in
#    from-scratch training; see engines/demo/TRAINING.md);
#  * DEMO_FUSED_GRID 14 (with_fused_grid): both backbone grids (16, 14) are resized (bicubic, as the official
#    concat_visual_features) to 14 x 14 (the SAM grid) instead of to the largest grid, so the decoder sees 196 visual
#    tokens, and the proposal head runs on that grid (stride 224 / 14 = 16); the official code has no such option (it
#    always resizes to the largest grid): this is the demo's one departure. Sessions 1-9 trained at 8 x 8 (64 tokens,
#    cheaper on 2 cores); session 10 moved the trained weights to 14 x 14 (no tensor depends on the grid) and every
#    metric rose (engines/demo/TRAINING.md).
DEMO_OVERRIDES = {"prompt_adapter": {"prompt_fuse_fn": "dense"}}
DEMO_FUSED_GRID = 14

# The fused grid: feature_fusion.output_size and the proposal head on it. No tensor depends on these keys.
GRID_KEYS = (("feature_fusion", "output_size"), ("proposal_head", "grid_size"), ("proposal_head", "stride"))


def with_fused_grid(cfg: dict, grid: int) -> dict:
    """A copy of `cfg` with the fused features at grid x grid and the proposal head (if any) on them, as
    proposal_head.config_from_official derives it (stride = image_size / grid). The weights stay valid."""
    image_size = int(cfg["image_size"])
    if grid < 1 or image_size % grid:
        raise ValueError(f"fused grid {grid}: the image size {image_size} must be a multiple of it")
    out = copy.deepcopy(cfg)
    out["feature_fusion"]["output_size"] = grid
    if "proposal_head" in out:
        out["proposal_head"].update(grid_size=grid, stride=image_size // grid)
    return out


def checked_in_config(name: str) -> dict:
    """engines/configs/<name>.json: our_config of the official keys (+ DEMO_OVERRIDES and DEMO_FUSED_GRID for the
    demo)."""
    cfg = our_config(official_configs()[name])
    if name == "demo":
        for section, values in DEMO_OVERRIDES.items():
            cfg[section] = {**cfg[section], **values}
        cfg = with_fused_grid(cfg, DEMO_FUSED_GRID)
    return cfg


def write_all(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in official_configs():
        p = out / f"{name}.json"
        p.write_text(json.dumps(checked_in_config(name), indent=1) + "\n")
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Analytic parameter count (tensors, parameters) of the OFFICIAL flax model, written from the module definitions:
# modeling/eva02_vit.py, baselines/segment_anything/modeling/{image_encoder,prompt_encoder,transformer,mask_decoder}.py,
# modeling/{prompt_adapter,mask_adapter,point_predictor,text_decoder,t5_text_head,layers}.py (+ t5x layers).
class _Count:
    def __init__(self):
        self.tensors, self.params = 0, 0

    def add(self, *shapes):
        for s in shapes:
            n = 1
            for d in s:
                n *= int(d)
            self.tensors += 1
            self.params += n

    def dense(self, i, o, bias=True):
        self.add((i, o), *([(o,)] if bias else []))

    def ln(self, d, bias=True):
        self.add((d,), *([(d,)] if bias else []))


def _two_way(c: _Count, depth: int, d: int, mlp: int = 2048, down: int = 2):
    """SAM TwoWayTransformer: per layer self-attn (d), 2 cross-attns (d/down inside), MLP, 4 LayerNorms."""
    def attn(inner):
        for _ in range(3):
            c.dense(d, inner)
        c.dense(inner, d)
    for _ in range(depth):
        attn(d)
        c.ln(d)
        attn(d // down)
        c.ln(d)
        c.dense(d, mlp)
        c.dense(mlp, d)
        c.ln(d)
        c.ln(d)
        attn(d // down)
    attn(d // down)
    c.ln(d)


def _sizes(off: dict) -> dict:
    git, sam = off["git_backbone"], off["sam_backbone"]
    td = dict(off["text_decoder"])
    if td["name"] in T5_SIZES:
        for k, v in zip(("emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim", "mlp_dim"),
                        T5_SIZES[td["name"]]):
            td.setdefault(k, v)
    pa = {"depth": 2, "transformer_dim": 256, "num_outputs": 32, "output_dim": 1024, **off.get("prompt_adapter", {})}
    vp = off.get("visual_project_layers") or {"name": "none"}
    vis = pa["output_dim"] if vp.get("name", "none") == "none" else vp.get("emb_dim", 1024)
    text = td.get("hidden_size", 768) if td["name"] == "git" else td["emb_dim"]
    return {"git": git, "sam": sam, "td": td, "pa": pa, "vp": vp, "vis": vis, "text": text}


def _proposal_head_count(c: _Count, off: dict) -> None:
    """proposal_head.py's one-level CenterNet: fpn conv1x1 + LN + conv3x3 + LN (no conv bias), tower of
    conv3x3 + GroupNorm, bbox_pred (4), agn_hm (1), scale. The released CenterNet2 box decoder is not counted."""
    bd = off["box_decoder"]
    if bd.get("name") != "centernet_proposal":
        raise ValueError(f"official_param_count: box decoder {bd.get('name')!r} is not counted")
    ch = int(bd.get("channels", 256))
    cin = off["git_backbone"]["embed_dim"] + off["sam_backbone"].get("out_chans", 256)
    c.add((1, 1, cin, ch)), c.ln(ch), c.add((3, 3, ch, ch)), c.ln(ch)
    for _ in range(int(bd.get("num_convs", 4))):
        c.add((3, 3, ch, ch), (ch,)), c.ln(ch)
    c.add((3, 3, ch, 4), (4,), (3, 3, ch, 1), (1,), (1,))


def official_param_count(off: dict) -> tuple[int, int]:
    """(tensors, parameters) of the official model for an official-keys config (box decoder: see
    _proposal_head_count)."""
    s = _sizes(off)
    c = _Count()
    if off.get("box_decoder"):
        _proposal_head_count(c, off)
    # EVA02 (git_backbone): patch conv, cls token, pos embed at the pretrain grid (+cls), blocks, ln_post
    g = s["git"]
    D, p = g["embed_dim"], g["patch_size"]
    hid = int(D * g.get("mlp_ratio", 4 * 2 / 3))
    c.add((p, p, 3, D), (D,), (1, 1, D), (1, (g.get("pretrain_img_size", 224) // p) ** 2 + 1, D))
    for _ in range(g["depth"]):
        c.ln(D)
        c.add((D, D), (D, D), (D, D), (D,), (D,))   # q, k, v kernels (no bias) + q_bias, v_bias
        c.dense(D, D)
        c.ln(D)
        c.dense(D, hid), c.dense(D, hid), c.ln(hid), c.dense(hid, D)  # SwiGLU w1, w2, ffn_ln, w3
    if g.get("use_ln_post", True):
        c.ln(D)
    # SAM ViT (sam_backbone): patch 16 conv, abs pos at img_size/16, blocks with rel-pos, neck
    m = s["sam"]
    D, heads = m["embed_dim"], m["num_heads"]
    grid = m.get("img_size", 1024) // 16
    c.add((16, 16, 3, D), (D,), (1, grid, grid, D))
    for i in range(m["depth"]):
        size = m.get("window_size", 14) if i in m["window_block_indexes"] else grid
        c.ln(D)
        c.dense(D, 3 * D)
        c.add((2 * size - 1, D // heads), (2 * size - 1, D // heads))
        c.dense(D, D)
        c.ln(D)
        c.dense(D, 4 * D), c.dense(4 * D, D)
    out = m.get("out_chans", 256)
    c.add((1, 1, D, out)), c.ln(out), c.add((3, 3, out, out)), c.ln(out)
    # SAM prompt encoder: gaussian PE (2, E/2), 4 point embeddings, not-a-point, no-mask
    E = off.get("prompt_encoder", {}).get("embed_dim", 256)
    c.add((2, E // 2), *[(1, E)] * 6)
    # prompt adapter
    pa = s["pa"]
    T, O, Do = pa["transformer_dim"], pa["num_outputs"], pa["output_dim"]
    c.add((O, T))
    for _ in range(O):
        c.dense(T, Do)
    c.dense(g["embed_dim"] + out, T)
    if E != T:
        c.dense(E, T), c.dense(E, T)
    _two_way(c, pa["depth"], T)
    c.dense(T, Do)
    # text head
    td, H, V = s["td"], s["text"], off["vocab_size"]
    if td["name"] == "git":
        c.add((V, H), (td.get("max_caption_length", 1024), H))
        c.ln(H)
        for _ in range(td.get("num_hidden_layers", 6)):
            for _ in range(4):
                c.dense(H, H)
            c.ln(H)
            c.dense(H, 4 * H), c.dense(4 * H, H)
            c.ln(H)
        c.dense(Do, H), c.ln(H)              # visual_projection.0 / .1
        c.dense(H, V)
    else:
        hd = td["num_heads"] * td["head_dim"]

        def attn(r):
            for w in ("q", "k", "v", "o"):
                c.dense(H if w != "o" else hd, hd if w != "o" else H, bias=False)
                if w in ("q", "v") and r > 0:
                    c.add((H, r), (r, hd))
        c.add((V, H))
        for side, layers in (("encoder", td["num_encoder_layers"]), ("decoder", td["num_decoder_layers"])):
            r = td.get(f"{side}_lora_rank", 0)
            c.add((td["num_heads"], 32))       # relpos_bias (32 buckets)
            for _ in range(layers):
                c.ln(H, bias=False)
                attn(r)
                if side == "decoder":
                    c.ln(H, bias=False)
                    attn(r)
                c.ln(H, bias=False)
                c.dense(H, td["mlp_dim"], bias=False), c.dense(H, td["mlp_dim"], bias=False)
                c.dense(td["mlp_dim"], H, bias=False)
            c.ln(H, bias=False)
        if not td.get("logits_via_embedding", False):
            c.dense(H, V, bias=False)
        if s["vp"].get("name", "none") == "linear":
            c.dense(Do, s["vis"])
            if s["vp"].get("use_projection_ln", True):
                c.ln(s["vis"])
    # point predictor
    pp = {"hidden_dim": 512, "depth": 3, "num_output_points": 4, "num_classes": 1, "pre_norm": False,
          **off.get("point_predictor", {})}
    if pp["pre_norm"]:
        c.ln(H)
    dims = [H] + [pp["hidden_dim"]] * (pp["depth"] - 1) + [pp["num_output_points"] * (3 + pp["num_classes"])]
    for a, b in zip(dims[:-1], dims[1:]):
        c.dense(a, b)
    # mask adapter
    ma = {"depth": 2, "transformer_dim": 256, "num_outputs": 2, "output_dim": 256, "gating": True,
          **off.get("mask_adapter", {})}
    c.add((ma["num_outputs"], ma["transformer_dim"]))
    _two_way(c, ma["depth"], ma["transformer_dim"])
    c.ln(s["vis"]), c.dense(s["vis"], ma["transformer_dim"])
    c.ln(H), c.dense(H, ma["transformer_dim"])
    if ma["gating"]:
        c.add((ma["num_outputs"], ma["output_dim"]))
    # SAM mask decoder (fixed 256 dims, 3 + 1 mask tokens)
    c.add((1, 256), (4, 256))
    _two_way(c, 2, 256)
    c.add((2, 2, 64, 256), (64,)), c.ln(64), c.add((2, 2, 32, 64), (32,))
    for _ in range(4):
        c.dense(256, 256), c.dense(256, 256), c.dense(256, 32)
    c.dense(256, 256), c.dense(256, 256), c.dense(256, 4)
    return c.tensors, c.params


def converted_param_count(off: dict) -> tuple[int, int]:
    """(tensors, parameters) our converter produces from the official model: resolution tables resized to the
    config's image size (EVA02 pos embed grid image/patch (+cls), SAM pos embed image/16, SAM global rel-pos
    2*image/16-1) and T5 LoRA pairs merged into their base kernels."""
    tensors, params = official_param_count(off)
    s = _sizes(off)
    g, m = s["git"], s["sam"]
    img = int(g["image_size"][0])
    D, p = g["embed_dim"], g["patch_size"]
    params += ((img // p) ** 2 - (g.get("pretrain_img_size", 224) // p) ** 2) * D
    D, hdim = m["embed_dim"], m["embed_dim"] // m["num_heads"]
    old, new = m.get("img_size", 1024) // 16, int(m["image_size"][0]) // 16
    params += (new * new - old * old) * D
    n_global = m["depth"] - len(m["window_block_indexes"])
    params += n_global * 2 * ((2 * new - 1) - (2 * old - 1)) * hdim
    td = s["td"]
    if td["name"] != "git":
        hd = td["num_heads"] * td["head_dim"]
        for side, layers, attns in (("encoder", td["num_encoder_layers"], 1), ("decoder", td["num_decoder_layers"], 2)):
            r = td.get(f"{side}_lora_rank", 0)
            if r > 0:
                tensors -= layers * attns * 2 * 2
                params -= layers * attns * 2 * (s["text"] * r + r * hd)
    return tensors, params
