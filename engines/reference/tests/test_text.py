"""Text side vs the official golden outputs: GIT / T5 teacher-forced logits and hidden states, point head, LoRA merge.

The visual tokens are the golden `out_tf_visual_features` (the prompt adapter's output, after the T5
visual_project_layers), which isolates these checks from the image side.
"""
import functools

import numpy as np
import pytest
import torch

from pixelllm_ref import config, git_decoder, point_head, t5
from pixelllm_ref.convert import OfficialParams
from pixelllm_ref.golden import load_golden, rel_l2

TOL = 1e-4
HEADS = {"git_decoder": (git_decoder, git_decoder.GitDecoder), "t5": (t5, t5.T5)}


@functools.lru_cache(maxsize=None)
def build(name):
    g = load_golden(name)
    cfg = config.from_official(g.official_config)
    head = cfg["text_decoder"]
    mod, cls = HEADS[head]
    cfg[head] = mod.config_from_official(g.official_config)
    cfg["point_head"] = point_head.config_from_official(g.official_config)
    params = OfficialParams(g.params)
    tensors = {**mod.convert_official(params, cfg), **point_head.convert_official(params, cfg)}
    dec, ph = cls(cfg).eval(), point_head.PointHead(cfg).eval()
    for prefix, m in ((head, dec), ("point_head", ph)):
        sd = {k[len(prefix) + 1:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix + ".")}
        assert set(sd) == set(m.state_dict()), set(sd) ^ set(m.state_dict())
        m.load_state_dict(sd, strict=True)
    return g, cfg, params, tensors, dec, ph


def inputs(g):
    vis = torch.from_numpy(g.outputs["tf_visual_features"][:, 0])
    tok = torch.from_numpy(g.inputs["text_tokens"][:, 0]).long()
    hw = point_head.image_shape_from_padding_mask(torch.from_numpy(g.inputs["padding_mask"]))
    return vis, tok, hw


def test_conversion_consumes_text_params(golden):
    g, cfg, params, tensors, _, _ = build(golden.name)
    left = [k for k in params.unused() if k.startswith(("textual/", "point_predictor/"))]
    assert left == []
    head = cfg["text_decoder"]
    assert all(k.startswith((head + ".", "point_head.")) for k in tensors)
    if head == "git_decoder":
        assert "git_decoder.encoder.layer.0.attention.self.query.weight" in tensors
    else:
        assert "t5.encoder.block.0.layer.0.SelfAttention.q.weight" in tensors
        assert not any("lora" in k for k in tensors)


def test_teacher_forced_matches_official(golden):
    g, cfg, _, _, dec, ph = build(golden.name)
    vis, tok, hw = inputs(g)
    with torch.no_grad():
        logits, feats = dec(vis, None, tok)   # the official eval pass has no context tokens
        coords, plogits = ph(feats, hw)
    errs = {"tf_text_logits": rel_l2(logits, g.outputs["tf_text_logits"]),
            "tf_text_feats": rel_l2(feats, g.outputs["tf_text_feats"]),
            "tf_point_coords": rel_l2(coords, g.outputs["tf_point_coords"][:, 0]),
            "tf_point_logits": rel_l2(plogits, g.outputs["tf_point_logits"][:, 0])}
    print(golden.name, errs)
    assert all(e <= TOL for e in errs.values()), errs


def test_image_shape_from_padding_mask(golden):
    hw = point_head.image_shape_from_padding_mask(torch.from_numpy(golden.inputs["padding_mask"]))
    expect = [[300.0, 384.0]] if golden.name.endswith("h300") else [[384.0, 384.0]]
    assert hw.tolist() == expect


def _lora_paths(params):
    return sorted(k[:-len("/kernel_left_lora")] for k in params.keys("textual/") if k.endswith("kernel_left_lora"))


@pytest.mark.parametrize("name", ["t5_s0_h384", "t5_s1_h300"])
def test_t5_lora_merge_equals_unmerged(name):
    """Merged q/v kernels equal the unmerged official computation x@K + scale * (x@L)@R."""
    g, cfg, _, tensors, _, _ = build(name)
    paths = _lora_paths(OfficialParams(g.params))
    assert len(paths) == 2 * (2 * 2 + 2)  # q,v x (2 encoder self + 2 decoder self + 2 decoder cross)
    x = torch.from_numpy(np.random.RandomState(0).randn(5, cfg["t5"]["d_model"]).astype(np.float32))
    names = {"attention": "SelfAttention", "self_attention": "SelfAttention",
             "encoder_decoder_attention": "EncDecAttention"}
    for p in paths:
        side, layer, att, proj = p.split("/")[2:6]
        i = int(layer.split("_")[1])
        sub = {"encoder": 0, "self_attention": 0, "encoder_decoder_attention": 1}[att if side == "decoder" else side]
        ours = f"t5.{side}.block.{i}.layer.{sub}.{names[att]}.{proj[0]}.weight"
        scale = cfg["t5"][f"{side}_lora_scale"]
        k, left, right = (torch.from_numpy(g.params[p + s]) for s in ("/kernel", "/kernel_left_lora",
                                                                      "/kernel_right_lora"))
        unmerged = x @ k + scale * ((x @ left) @ right)
        merged = x @ torch.from_numpy(tensors[ours]).T
        assert rel_l2(merged, unmerged) < 1e-6, ours
        assert rel_l2(x @ k, unmerged) > 1e-3, "LoRA delta should matter in this golden model"


def test_t5_lora_scale_matters():
    """The golden logits pin the scale: using scale/rank instead of scale breaks them."""
    g, cfg, _, _, _, _ = build("t5_s0_h384")
    cfg2 = {**cfg, "t5": {**cfg["t5"], "encoder_lora_scale": 0.5, "decoder_lora_scale": 0.5}}
    wrong = t5.convert_official(OfficialParams(g.params), cfg2)
    m = t5.T5(cfg2).eval()
    m.load_state_dict({k[3:]: torch.from_numpy(v) for k, v in wrong.items()})
    vis, tok, _ = inputs(g)
    with torch.no_grad():
        logits, _ = m(vis, None, tok)
    assert rel_l2(logits, g.outputs["tf_text_logits"]) > 1e-3


def test_t5_relative_buckets_match_t5x_edges():
    """Bucket ids of the t5x formula at the log-bucket boundaries (bidirectional 32 buckets, distance 128)."""
    rel = np.arange(-130, 131, dtype=np.int32)
    b = t5.relative_position_bucket(rel, True, 32, 128)
    assert b[rel == 0][0] == 0 and b[rel == 7][0] == 16 + 7 and b[rel == -7][0] == 7
    assert b[rel == 8][0] == 24 and b[rel == 16][0] == 26 and b[rel == -16][0] == 10
    assert b[rel == 130][0] == 31 and b[rel == -130][0] == 15
    u = t5.relative_position_bucket(-np.arange(0, 40, dtype=np.int32), False, 32, 128)
    assert list(u[:16]) == list(range(16)) and u[32] == 21
    assert (t5.relative_position_bucket(np.arange(1, 5, dtype=np.int32), False, 32, 128) == 0).all()
