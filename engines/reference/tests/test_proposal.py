"""proposal_head: CenterNet targets/losses (official formulas), deterministic post-processing, conversion layout."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelllm_ref import configs, proposal_head as ph
from pixelllm_ref.convert import ConversionError, OfficialParams

CFG = json.loads((Path(__file__).resolve().parents[2] / "configs" / "demo.json").read_text())


def test_demo_config_section():
    c = CFG["proposal_head"]
    # the proposal head runs on the fused grid (14 x 14 since session 10: configs.DEMO_FUSED_GRID)
    assert c["input_dim"] == 384 and c["grid_size"] == CFG["feature_fusion"]["output_size"] == 14
    assert c["stride"] * c["grid_size"] == CFG["image_size"] == 224
    assert (c["iou_threshold"], c["score_threshold"], c["max_detections"]) == (0.5, 0.05, 16)
    off = configs.demo_official()
    with pytest.raises(ConversionError, match="not supported"):
        ph.config_from_official({**off, "box_decoder": {"name": "centernet2_det_decoder"}})


def test_ground_truth_peak_gaussian_and_regression():
    boxes = torch.tensor([[[30.0, 40.0, 90.0, 80.0], [0, 0, 0, 0]]])
    heat, reg = ph.ground_truth(boxes, torch.tensor([[True, True]]), (16, 16), 14)
    heat, reg = heat.reshape(16, 16), reg.reshape(16, 16, 4)
    # centre (60, 60) -> cell (4, 4) (int(60/14) = 4), whose centre is (63, 63)
    assert heat[4, 4] == 1.0 and (heat == 1.0).sum() == 1
    area = 60 * 40
    r2 = max(((1 - 0.8) / (1 + 0.8)) ** 2 * 2 * area, 16.0)
    want = np.exp(-((77 - 60) ** 2 + (63 - 60) ** 2) / r2)
    assert heat[4, 5].item() == pytest.approx(want, rel=1e-5)
    assert torch.allclose(reg[4, 4], torch.tensor([63 - 30, 63 - 40, 90 - 63, 80 - 63]) / 14.0)
    has_reg = reg.amax(-1) >= 0
    # regression on the 3x3 cells around the centre that lie inside the box (x 35..91 -> cols 3..5, rows 3..5)
    assert has_reg.sum() == 9 and has_reg[3:6, 3:6].all()
    assert (reg[~has_reg] == -ph.INF).all()


def test_loss_is_small_for_the_target_and_has_gradients():
    torch.manual_seed(0)
    head = ph.ProposalHead(CFG)
    feats = torch.randn(2, 16, 16, 384)
    boxes = torch.tensor([[[30.0, 40, 90, 80], [120, 120, 180, 200]], [[10, 10, 50, 60], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True], [True, False]])
    out = head(feats)
    loss = ph.losses(out, boxes, valid, 14)
    loss["det_loss"].backward()
    assert all(p.grad is not None for p in head.parameters())
    heat, reg = ph.ground_truth(boxes, valid, (16, 16), 14)
    p = heat.clamp(1e-4, 1 - 1e-4)
    perfect = {"heatmap": torch.log(p / (1 - p)).reshape(2, 16, 16),
               "box_regs": torch.where(reg >= 0, reg, torch.ones_like(reg)).reshape(2, 16, 16, 4)}
    good = ph.losses(perfect, boxes, valid, 14)
    assert good["proposal_reg_loss"] < 1e-5 and good["det_loss"] < loss["det_loss"]


def test_giou_matches_box_form():
    g = torch.rand(50, 4) * 20 + 1
    p = torch.rand(50, 4) * 20 + 1
    a = torch.stack([-p[:, 0], -p[:, 1], p[:, 2], p[:, 3]], -1)  # both boxes around the same point
    b = torch.stack([-g[:, 0], -g[:, 1], g[:, 2], g[:, 3]], -1)
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1) + (b[:, 2:] - b[:, :2]).prod(-1) - inter
    enclose = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(-1)
    want = 1 - (inter / union - (enclose - union) / enclose)
    assert torch.allclose(ph.giou_loss_ltrb(p, g), want, atol=1e-4)


def _brute_nms(boxes, scores, thr, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(ph.box_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0] < thr for j in keep):
            keep.append(i)
        if len(keep) == k:
            break
    return keep


def test_postprocess_threshold_nms_order_clip():
    c = {"proposal_head": {**CFG["proposal_head"], "grid_size": 16, "stride": 14, "max_detections": 3}}  # 14 px cells
    hm = torch.full((1, 16, 16), -10.0)
    reg = torch.ones(1, 16, 16, 4)
    hm[0, 4, 4], hm[0, 4, 5], hm[0, 10, 10], hm[0, 0, 0], hm[0, 15, 15] = 3.0, 2.0, 1.0, 1.0, 0.5
    reg[0, 4, 4] = reg[0, 4, 5] = torch.tensor([2.0, 2.0, 2.0, 2.0])   # 56 px boxes 14 px apart: IoU 0.6
    reg[0, 0, 0] = torch.tensor([3.0, 3.0, 1.0, 1.0])                 # reaches outside the image: clipped
    (boxes, scores), = ph.postprocess({"heatmap": hm, "box_regs": reg}, torch.tensor([[200.0, 210.0]]), c)
    assert torch.allclose(scores, torch.sigmoid(torch.tensor([3.0, 1.0, 1.0])))
    assert torch.allclose(boxes[0], torch.tensor([63 - 28.0, 63 - 28, 63 + 28, 63 + 28]))
    assert torch.allclose(boxes[1], torch.tensor([0.0, 0, 21, 21]))        # tie: lower cell index first, clipped
    assert torch.allclose(boxes[2], torch.tensor([147 - 14.0, 147 - 14, 147 + 14, 147 + 14]))
    c["proposal_head"]["score_threshold"] = 0.8
    (boxes, scores), = ph.postprocess({"heatmap": hm, "box_regs": reg}, torch.tensor([[200.0, 210.0]]), c)
    assert len(boxes) == 1


def test_nms_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(60, 2, generator=g) * 100
    wh = torch.rand(60, 2, generator=g) * 40 + 5
    boxes = torch.cat([xy, xy + wh], -1)
    scores = torch.rand(60, generator=g)
    order = torch.sort(-scores, stable=True).indices
    keep = ph.nms(boxes[order], scores[order], 0.5, 10)
    assert order[keep].tolist() == _brute_nms(boxes, scores.tolist(), 0.5, 10)


def _np_conv(x, k, b=None):
    """NHWC 'SAME' conv with a flax kernel (kh, kw, in, out)."""
    kh, kw = k.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    out = sum(np.einsum("bhwc,co->bhwo", xp[:, i:i + h, j:j + w], k[i, j]) for i in range(kh) for j in range(kw))
    return out + (0 if b is None else b)


def _np_ln(x, s, b, eps=1e-6):
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * s + b


def _np_gn(x, s, b, groups=32, eps=1e-6):
    bsz, h, w, c = x.shape
    g = x.reshape(bsz, h, w, groups, c // groups)
    m, v = g.mean((1, 2, 4), keepdims=True), g.var((1, 2, 4), keepdims=True)
    return ((g - m) / np.sqrt(v + eps)).reshape(x.shape) * s + b


def test_convert_official_layout_against_a_flax_style_forward():
    c = {"proposal_head": {**CFG["proposal_head"], "input_dim": 48, "channels": 64, "num_convs": 2}}
    rng = np.random.default_rng(0)
    r = lambda *s: rng.normal(0, 0.2, s).astype(np.float32)  # noqa: E731
    pg = "box_decoder/proposal_generator"
    flat = {"box_decoder/fpn/simfp_4.0/kernel": r(1, 1, 48, 64), "box_decoder/fpn/simfp_4.1/kernel": r(3, 3, 64, 64)}
    for n in ("simfp_4.0.norm", "simfp_4.1.norm"):
        flat[f"box_decoder/fpn/{n}/scale"], flat[f"box_decoder/fpn/{n}/bias"] = 1 + r(64), r(64)
    for i in (0, 3):
        flat[f"{pg}/bbox_tower/{i}/kernel"], flat[f"{pg}/bbox_tower/{i}/bias"] = r(3, 3, 64, 64), r(64)
        flat[f"{pg}/bbox_tower/{i + 1}/scale"], flat[f"{pg}/bbox_tower/{i + 1}/bias"] = 1 + r(64), r(64)
    flat[f"{pg}/bbox_pred/kernel"], flat[f"{pg}/bbox_pred/bias"] = r(3, 3, 64, 4), r(4)
    flat[f"{pg}/agn_hm/kernel"], flat[f"{pg}/agn_hm/bias"] = r(3, 3, 64, 1), r(1)
    flat[f"{pg}/scales.0/scale"] = np.array([1.3], np.float32)
    params = OfficialParams(flat)
    tensors = ph.convert_official(params, c)
    assert params.unused() == [] and all(k.startswith("proposal_head.") for k in tensors)
    head = ph.ProposalHead(c)
    head.load_state_dict({k[len("proposal_head."):]: torch.from_numpy(v) for k, v in tensors.items()})
    x = rng.normal(size=(1, 6, 5, 48)).astype(np.float32)
    f = flat
    y = _np_ln(_np_conv(x, f["box_decoder/fpn/simfp_4.0/kernel"]), f["box_decoder/fpn/simfp_4.0.norm/scale"],
               f["box_decoder/fpn/simfp_4.0.norm/bias"])
    y = _np_ln(_np_conv(y, f["box_decoder/fpn/simfp_4.1/kernel"]), f["box_decoder/fpn/simfp_4.1.norm/scale"],
               f["box_decoder/fpn/simfp_4.1.norm/bias"])
    for i in (0, 3):
        y = _np_conv(y, f[f"{pg}/bbox_tower/{i}/kernel"], f[f"{pg}/bbox_tower/{i}/bias"])
        y = np.maximum(_np_gn(y, f[f"{pg}/bbox_tower/{i + 1}/scale"], f[f"{pg}/bbox_tower/{i + 1}/bias"]), 0)
    want_reg = np.maximum(_np_conv(y, f[f"{pg}/bbox_pred/kernel"], f[f"{pg}/bbox_pred/bias"]) * 1.3, 0)
    want_hm = _np_conv(y, f[f"{pg}/agn_hm/kernel"], f[f"{pg}/agn_hm/bias"])[..., 0]
    with torch.no_grad():
        out = head(torch.from_numpy(x))
    np.testing.assert_allclose(out["box_regs"].numpy(), want_reg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["heatmap"].numpy(), want_hm, rtol=1e-4, atol=1e-4)
    flat["box_decoder/roi_heads/box_head/kernel"] = r(2, 2)
    with pytest.raises(ConversionError, match="CenterNet2"):
        ph.convert_official(OfficialParams(flat), c)
