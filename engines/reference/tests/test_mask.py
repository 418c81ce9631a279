"""Mask side (box prompt -> mask adapter -> SAM mask decoder) against the official golden masks and IoUs.

Inputs are golden tensors: the SAM features `out_sam_visual_features`, the visual tokens `out_tf_visual_features`,
the predicted boxes `out_{cap,ref}_detection_boxes` and the text states of the cleaned tokens
`out_{cap,ref}_text_tokens` (ref: after the `where is ...` context), computed by our converted text decoder (itself
checked in test_text.py). Outputs: `out_{cap,ref}_detection_masks` (B,P,96,96) and `out_{cap,ref}_iou_predictions`.
"""
import functools

import pytest
import torch

from pixelllm_ref import config as config_lib
from pixelllm_ref import git_decoder, losses, mask_adapter, mask_decoder, prompt_encoder, t5
from pixelllm_ref.convert import OfficialParams
from pixelllm_ref.golden import rel_l2

from conftest import _golden

TOL = 1e-4
_MODS = {"prompt_encoder": (prompt_encoder, prompt_encoder.PromptEncoder),
         "mask_adapter": (mask_adapter, mask_adapter.MaskAdapter),
         "mask_decoder": (mask_decoder, mask_decoder.MaskDecoder),
         "git_decoder": (git_decoder, git_decoder.GitDecoder), "t5": (t5, t5.T5)}


@functools.lru_cache(maxsize=None)
def _build(name):
    g = _golden(name)
    params = OfficialParams(g.params)
    cfg = config_lib.from_official(g.official_config)
    names = ["prompt_encoder", "mask_adapter", "mask_decoder", cfg["text_decoder"]]
    for n in names:
        cfg[n] = _MODS[n][0].config_from_official(g.official_config)
    mods = {}
    for n in names:
        mod, cls = _MODS[n]
        tensors = mod.convert_official(params, cfg)
        m = cls(cfg).eval()
        m.load_state_dict({k[len(n) + 1:]: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        mods[n] = m
    left = [k for k in params.unused() if k.startswith(("mask_adapter/", "mask_decoder/", "prompt_encoder/"))]
    assert left == [], left
    return cfg, mods


@pytest.mark.parametrize("task", ["cap", "ref"])
def test_masks_match_official(golden, task):
    cfg, mods = _build(golden.name)
    out = golden.outputs
    visual = torch.from_numpy(out["tf_visual_features"])
    tokens = torch.from_numpy(out[f"{task}_text_tokens"]).long()
    context = torch.from_numpy(golden.inputs["context_tokens"][:, 0]).long() if task == "ref" else None
    pe = mods["prompt_encoder"]
    with torch.no_grad():
        _, feats = mods[cfg["text_decoder"]](visual[:, 0], context, tokens[:, 0])
        sparse = pe.embed_boxes(torch.from_numpy(out[f"{task}_detection_boxes"]), (cfg["image_size"],) * 2)
        sparse = mods["mask_adapter"](sparse, visual, feats[:, None])
        sam = torch.from_numpy(out["sam_visual_features"])
        masks, iou = mods["mask_decoder"].predict(sam, pe.get_dense_pe(24, 24), sparse, pe.dense_embedding())
    assert masks.shape == (1, 1, 1, 96, 96) and iou.shape == (1, 1, 1)  # multimask_output=False: mask token 0
    errs = {"masks": rel_l2(masks[:, :, 0].numpy(), out[f"{task}_detection_masks"]),
            "iou": rel_l2(iou[..., 0].numpy(), out[f"{task}_iou_predictions"])}
    print(golden.name, task, errs)
    assert all(e <= TOL for e in errs.values()), errs


def test_closed_gate_keeps_box_tokens():
    """tanh(alpha) = 0 (the official init) leaves the SAM box tokens untouched."""
    cfg = {"mask_adapter": {"depth": 1, "transformer_dim": 256, "num_outputs": 2, "gating": True, "visual_dim": 8,
                            "text_dim": 16}}
    torch.manual_seed(0)
    ma = mask_adapter.MaskAdapter(cfg)
    with torch.no_grad():
        ma.alpha_output.weight.zero_()
        sparse = torch.randn(2, 3, 2, 256)
        got = ma(sparse, torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 16))
    torch.testing.assert_close(got, sparse)


def test_mask_loss_keeps_the_best_mask():
    """sam_mask_loss: per prompt the mask with the lowest 20*focal + dice counts; a perfect mask gives ~0."""
    h = w = 8
    gt = torch.zeros(1, 1, h, w)
    gt[..., 2:6, 2:6] = 1
    good = (gt * 2 - 1) * 50.0
    bad = -good
    pred = torch.stack([bad, good], dim=2)  # (B,P,M,h,w) at full size
    iou = torch.tensor([[[0.0, 1.0]]])
    m = losses.sam_mask_loss(pred, iou, gt, torch.ones(1, 1), torch.ones(1, h, w))
    assert float(m["mask_focal_loss"]) < 1e-6 and float(m["mask_dice_loss"]) < 1e-6
    assert float(m["mask_iou_pred_loss"]) < 1e-6
