"""Proposal head for dense captioning: a one-level, class-agnostic CenterNet on the fused feature map.

The official densecap / mix configs put a CenterNet2 box decoder on `git_visual_features+sam_visual_features`
(`pixel_llm/modeling/box_decoder.py` FpnCenterNet2 = SimpleFeaturePyramid (vitdet) over the fused map, the
CenterNet head of `baselines/centernet/modeling/centernet_head.py` on 5 levels, then CascadeROIHeads). For the small
demo model we keep the CenterNet FIRST stage on ONE level (the fused grid itself, stride = image_size / grid):
  fpn     = the scale-1.0 branch of SimpleFeaturePyramid: conv1x1 (no bias) -> LN -> conv3x3 (no bias) -> LN
  tower   = `num_convs` x (conv3x3 -> GroupNorm(32) -> ReLU)          (centernet_head.Tower, norm 'GN')
  agn_hm  = conv3x3 -> 1 heatmap logit per location                   (class-agnostic: num_classes <= 0)
  bbox    = relu(scale * conv3x3(tower)) -> (l, t, r, b) in stride units (bbox_pred + Scale + relu)
Training targets and losses follow `baselines/centernet/modeling/centernet.py` (get_ground_truth: peak at the
discretised centre, Gaussian heatmap exp(-d^2 / max(2 delta^2 area, min_radius^2)), delta = (1-0.8)/(1+0.8);
regression on the 3x3 cells around the centre that lie inside the box; heatmap focal loss alpha 0.25, beta 4,
gamma 2 normalised by the number of peaks; GIoU regression loss) with the densecap weights hm 0.5, reg 1.0.
The second (ROI) stage is not implemented: proposals are the final boxes, scored by the heatmap.

Post-processing (`postprocess`, deterministic; the native runtime ports it exactly):
  1. score_i = sigmoid(heatmap logit) at every grid cell i (row-major), box_i = (gx - l*s, gy - t*s, gx + r*s,
     gy + b*s) with gx = (col * s) + s // 2, gy = (row * s) + s // 2 (centernet_utils.get_grid), s = stride;
  2. boxes are clipped to the valid (unpadded) image [0, w] x [0, h] (box_decoder.py clip_boxes);
  3. the `pre_nms_topk` best cells by score (ties: lower cell index first); cells with score < `score_threshold`
     are dropped;
  4. greedy NMS in that order: a box is dropped when its IoU with an already kept box is >= `iou_threshold`
     (IoU = inter / (area_a + area_b - inter + 1e-8), the official nms.py `_bbox_overlap`);
  5. at most `max_detections` boxes are kept.
Dense captioning (`dense_caption`): proposals -> each box is a prompt -> region caption with the region task's
context "an object of" (data.py); score = sqrt(proposal score * exp(caption log-prob)) (the official
`rescore_detections` for greedy decoding).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .convert import ConversionError, OfficialParams

NAME = "proposal_head"
INF = 1e8

# Training-only settings (official CenterNetDetector fields; hm/reg weights from configs/*densecap*.py).
LOSS_CONFIG = {"hm_min_overlap": 0.8, "min_radius": 4.0, "sigmoid_eps": 1e-4, "focal_alpha": 0.25,
               "focal_beta": 4.0, "focal_gamma": 2.0, "hm_weight": 0.5, "reg_weight": 1.0}


def config_from_official(official_cfg: dict) -> dict:
    """Our section from official-keys `box_decoder` (the converter's switch, see convert._component_names):
    {name: 'centernet_proposal', num_classes (<= 0: agnostic), channels, num_convs, fpn_channels?,
     iou_thresh, score_thresh, pre_nms_topk_test, post_nms_topk_test}."""
    bd = official_cfg.get("box_decoder") or {}
    if bd.get("name") != "centernet_proposal":
        raise ConversionError(
            f"proposal_head: box decoder {bd.get('name')!r} is not supported; only the one-level CenterNet first "
            "stage 'centernet_proposal' exists here (the released CenterNet2 cascade with FPN is not ported)")
    if int(bd.get("num_classes", -1)) > 0:
        raise ConversionError("proposal_head: only class-agnostic proposals (num_classes <= 0) are supported")
    from . import feature_fusion

    ff = feature_fusion.config_from_official(official_cfg)
    image_size = int(official_cfg["git_backbone"]["image_size"][0])
    if image_size % ff["output_size"]:
        raise ConversionError(f"proposal_head: image size {image_size} is not a multiple of the feature grid "
                              f"{ff['output_size']}")
    return {
        "input_dim": ff["out_channels"],
        "grid_size": ff["output_size"],
        "stride": image_size // ff["output_size"],
        "channels": int(bd.get("channels", 256)),
        "num_convs": int(bd.get("num_convs", 4)),
        "num_groups": 32,
        "layer_norm_eps": 1e-6,
        "group_norm_eps": 1e-6,
        "pre_nms_topk": int(bd.get("pre_nms_topk_test", 100)),
        "iou_threshold": float(bd.get("iou_thresh", 0.5)),
        "score_threshold": float(bd.get("score_thresh", 0.05)),
        "max_detections": int(bd.get("post_nms_topk_test", 16)),
    }


def convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]:
    """Official names (if a checkpoint of this one-level head existed under `box_decoder/`): fpn/simfp_4.0,
    simfp_4.0.norm, simfp_4.1, simfp_4.1.norm; proposal_generator/bbox_tower/{3i, 3i+1}, bbox_pred, scales.0,
    agn_hm. NOTE: the official tiny golden config has no box decoder, so no official tensors exist to check this
    mapping against; the released CenterNet2 (5 levels + ROI heads) is refused."""
    c = cfg[NAME]
    root = "box_decoder"
    if params.has(f"{root}/roi_heads") or params.keys(f"{root}/roi_heads/") or params.keys(f"{root}/fpn/top_block"):
        raise ConversionError("proposal_head: official CenterNet2 (FPN levels + cascade ROI heads) is not supported")

    def conv(path, bias=True):
        w = params.take(f"{path}/kernel").transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        return (w, params.take(f"{path}/bias")) if bias else (w, None)

    out = {}
    for ours, theirs in (("fpn.conv1", "fpn/simfp_4.0"), ("fpn.conv2", "fpn/simfp_4.1")):
        out[f"{NAME}.{ours}.weight"] = conv(f"{root}/{theirs}", bias=False)[0]
    for ours, theirs in (("fpn.norm1", "fpn/simfp_4.0.norm"), ("fpn.norm2", "fpn/simfp_4.1.norm")):
        out[f"{NAME}.{ours}.weight"] = params.take(f"{root}/{theirs}/scale")
        out[f"{NAME}.{ours}.bias"] = params.take(f"{root}/{theirs}/bias")
    pg = f"{root}/proposal_generator"
    for i in range(c["num_convs"]):
        w, b = conv(f"{pg}/bbox_tower/{3 * i}")
        out[f"{NAME}.tower.{3 * i}.weight"], out[f"{NAME}.tower.{3 * i}.bias"] = w, b
        out[f"{NAME}.tower.{3 * i + 1}.weight"] = params.take(f"{pg}/bbox_tower/{3 * i + 1}/scale")
        out[f"{NAME}.tower.{3 * i + 1}.bias"] = params.take(f"{pg}/bbox_tower/{3 * i + 1}/bias")
    for name in ("bbox_pred", "agn_hm"):
        out[f"{NAME}.{name}.weight"], out[f"{NAME}.{name}.bias"] = conv(f"{pg}/{name}")
    out[f"{NAME}.scale"] = params.take(f"{pg}/scales.0/scale")
    return out


class ProposalHead(nn.Module):
    """forward(features (B, g, g, input_dim) NHWC) -> {"heatmap": (B, g, g) logits, "box_regs": (B, g, g, 4)
    (l, t, r, b) >= 0 in stride units}."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg[NAME]
        self.c = c
        ch = c["channels"]
        if ch % c["num_groups"]:
            raise ValueError(f"proposal_head: channels {ch} not divisible by {c['num_groups']} groups")
        self.fpn = nn.ModuleDict({
            "conv1": nn.Conv2d(c["input_dim"], ch, 1, bias=False),
            "norm1": nn.LayerNorm(ch, eps=c["layer_norm_eps"]),
            "conv2": nn.Conv2d(ch, ch, 3, padding=1, bias=False),
            "norm2": nn.LayerNorm(ch, eps=c["layer_norm_eps"]),
        })
        layers = []
        for _ in range(c["num_convs"]):
            layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(c["num_groups"], ch, eps=c["group_norm_eps"]),
                       nn.ReLU()]
        self.tower = nn.Sequential(*layers)
        self.bbox_pred = nn.Conv2d(ch, 4, 3, padding=1)
        self.agn_hm = nn.Conv2d(ch, 1, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1))
        self.reset_parameters()

    def reset_parameters(self, reg_bias: float = 2.0):
        """Official CenterNetHead init: convs N(0, 0.01), bias 0; heatmap bias -4.6 (sigmoid = 0.01); box bias
        `reg_bias` (the official 8.0 is 'close to the regression range' of its levels; ours: ~half an object in
        stride units)."""
        for m in list(self.tower) + [self.bbox_pred, self.agn_hm]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.agn_hm.bias, -4.6)
        nn.init.constant_(self.bbox_pred.bias, reg_bias)

    def forward(self, features: torch.Tensor) -> dict:
        x = self.fpn["conv1"](features.permute(0, 3, 1, 2))
        x = self.fpn["norm1"](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.fpn["conv2"](x)
        x = self.fpn["norm2"](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        t = self.tower(x)
        reg = F.relu(self.bbox_pred(t) * self.scale)
        return {"heatmap": self.agn_hm(t)[:, 0], "box_regs": reg.permute(0, 2, 3, 1)}


# ---- geometry --------------------------------------------------------------------------------------------------
def grid_centres(h: int, w: int, stride: int) -> torch.Tensor:
    """(h*w, 2) x, y pixel centres of the cells, row-major (centernet_utils.get_grid for one level)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) * stride,
                            torch.arange(w, dtype=torch.float32) * stride, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1) + (stride // 2)


def ltrb_to_boxes(grid: torch.Tensor, ltrb_px: torch.Tensor) -> torch.Tensor:
    return torch.stack([grid[..., 0] - ltrb_px[..., 0], grid[..., 1] - ltrb_px[..., 1],
                        grid[..., 0] + ltrb_px[..., 2], grid[..., 1] + ltrb_px[..., 3]], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,4) x (M,4) x0,y0,x1,y1 -> (N,M) IoU with the official nms.py epsilon."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-8)


def giou_loss_ltrb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """centernet_utils.giou_loss for (N,4) l,t,r,b distances from the same point -> (N,)."""
    area_p = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_t = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    wi = (torch.minimum(pred[:, 2], target[:, 2]) + torch.minimum(pred[:, 0], target[:, 0])).clamp(min=0)
    hi = (torch.minimum(pred[:, 3], target[:, 3]) + torch.minimum(pred[:, 1], target[:, 1])).clamp(min=0)
    inter = wi * hi
    union = area_p + area_t - inter
    iou = inter / (union + 1e-6)
    we = (torch.maximum(pred[:, 2], target[:, 2]) + torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    he = (torch.maximum(pred[:, 3], target[:, 3]) + torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
    enclose = we * he
    return 1.0 - (iou - (enclose - union) / (enclose + 1e-6))


# ---- training --------------------------------------------------------------------------------------------------
@torch.no_grad()
def ground_truth(gt_boxes: torch.Tensor, gt_valid: torch.Tensor, grid_hw: tuple[int, int], stride: int,
                 loss_cfg: dict = LOSS_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNetDetector.get_ground_truth for one level, class-agnostic. gt_boxes (B,N,4) px, gt_valid (B,N) bool.
    Returns heatmap targets (B, h*w) in [0, 1] (1 = peak) and regression targets (B, h*w, 4) in stride units
    (-INF where no regression loss applies)."""
    h, w = grid_hw
    grid = grid_centres(h, w, stride)  # (m, 2)
    boxes = gt_boxes.to(torch.float32)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (B,N)
    valid = gt_valid.bool() & (area > 0)
    reg = torch.stack([grid[None, :, None, 0] - boxes[:, None, :, 0], grid[None, :, None, 1] - boxes[:, None, :, 1],
                       boxes[:, None, :, 2] - grid[None, :, None, 0], boxes[:, None, :, 3] - grid[None, :, None, 1]],
                      dim=-1)  # (B,m,N,4)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B,N,2)
    discret = (centres / stride).to(torch.int64).to(torch.float32) * stride + stride / 2
    d = grid[None, :, None, :] - discret[:, None]  # (B,m,N,2)
    is_peak = (d ** 2).sum(-1) == 0
    in_box = reg.amin(-1) > 0
    centre3x3 = (d[..., 0].abs() <= stride) & (d[..., 1].abs() <= stride)
    reg_pos = centre3x3 & in_box & valid[:, None]
    dist2 = ((grid[None, :, None, :] - centres[:, None]) ** 2).sum(-1)
    delta = (1 - loss_cfg["hm_min_overlap"]) / (1 + loss_cfg["hm_min_overlap"])
    radius2 = torch.clamp(delta ** 2 * 2 * area, min=loss_cfg["min_radius"] ** 2)  # (B,N)
    wd2 = torch.clamp(dist2 / radius2[:, None], min=1e-6) * (~is_peak).float()
    wd2 = torch.where(valid[:, None], wd2, torch.full_like(wd2, INF))
    heat = torch.exp(-wd2).amax(-1) if wd2.shape[-1] else torch.zeros(wd2.shape[:2])
    dsel = torch.where(reg_pos, wd2, torch.full_like(wd2, INF))
    if dsel.shape[-1]:
        mind, idx = dsel.min(-1)
        regs = torch.take_along_dim(reg, idx[..., None, None].expand(-1, -1, 1, 4), dim=2)[:, :, 0]
        regs = torch.where((mind >= INF)[..., None], torch.full_like(regs, -INF), regs / stride)
    else:
        regs = torch.full(heat.shape + (4,), -INF)
    return heat, regs


def losses(outputs: dict, gt_boxes: torch.Tensor, gt_valid: torch.Tensor, stride: int,
           loss_cfg: dict = LOSS_CONFIG) -> dict[str, torch.Tensor]:
    """CenterNetDetector.loss_function (single device: no pmean). Returns pos/neg heatmap focal terms, the GIoU
    regression term and `det_loss` = hm_weight * (pos + neg) + reg_weight * reg."""
    hm = outputs["heatmap"]
    b, h, w = hm.shape
    gt_heat, gt_reg = ground_truth(gt_boxes, gt_valid, (h, w), stride, loss_cfg)
    eps = loss_cfg["sigmoid_eps"]
    pred = torch.sigmoid(hm.reshape(b, -1)).clamp(eps, 1 - eps)
    pos_w = (gt_heat == 1).float()
    neg_w = (1 - gt_heat) ** loss_cfg["focal_beta"]
    g = loss_cfg["focal_gamma"]
    pos = torch.log(pred) * (1 - pred) ** g * pos_w
    neg = torch.log(1 - pred) * pred ** g * neg_w
    norm = torch.clamp(pos_w.sum(1), min=1.0).mean()
    a = loss_cfg["focal_alpha"]
    pos_loss = -a * pos.sum(1).mean() / norm
    neg_loss = -(1 - a) * neg.sum(1).mean() / norm
    regs = outputs["box_regs"].reshape(b, -1, 4)
    sel = gt_reg.amax(-1) >= 0
    reg_norm = torch.clamp(sel.float().sum(1), min=1.0).mean()
    gi = giou_loss_ltrb(regs[sel], gt_reg[sel]) if sel.any() else regs.sum() * 0
    reg_loss = gi.sum() / b / reg_norm
    total = loss_cfg["hm_weight"] * (pos_loss + neg_loss) + loss_cfg["reg_weight"] * reg_loss
    return {"proposal_pos_loss": pos_loss, "proposal_neg_loss": neg_loss, "proposal_reg_loss": reg_loss,
            "det_loss": total}


# ---- inference -------------------------------------------------------------------------------------------------
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int) -> torch.Tensor:
    """Greedy NMS over boxes already sorted by descending score; returns kept indices (in order)."""
    keep: list[int] = []
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool)
    for i in range(boxes.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_keep:
            break
        suppressed |= iou[i] >= iou_threshold
    return torch.as_tensor(keep, dtype=torch.int64)


@torch.no_grad()
def postprocess(outputs: dict, image_hw: torch.Tensor, cfg: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: (boxes (K,4) x0,y0,x1,y1 pixels of the unpadded image, scores (K,)), best first (module doc)."""
    c = cfg[NAME]
    s = c["stride"]
    hm = outputs["heatmap"]
    b, h, w = hm.shape
    grid = grid_centres(h, w, s)
    scores = torch.sigmoid(hm.reshape(b, -1))
    boxes = ltrb_to_boxes(grid[None], outputs["box_regs"].reshape(b, -1, 4) * s)
    res = []
    for i in range(b):
        ih, iw = float(image_hw[i, 0]), float(image_hw[i, 1])
        bx = torch.stack([boxes[i, :, 0].clamp(0, iw), boxes[i, :, 1].clamp(0, ih),
                          boxes[i, :, 2].clamp(0, iw), boxes[i, :, 3].clamp(0, ih)], dim=-1)
        order = torch.sort(-scores[i], stable=True).indices[: c["pre_nms_topk"]]
        order = order[scores[i, order] >= c["score_threshold"]]
        keep = nms(bx[order], scores[i, order], c["iou_threshold"], c["max_detections"])
        res.append((bx[order][keep], scores[i, order][keep]))
    return res


@torch.no_grad()
def dense_caption(model, head: ProposalHead, enc: dict, context_tokens: torch.Tensor, **decode) -> list[dict]:
    """Dense captioning of encoded images (`model.encode`): proposals, then every box as a prompt with
    `context_tokens` (Lc,) (the region task's "an object of" + eos), greedy captions. Returns per image
    {boxes (K,4), proposal_scores (K,), scores (K,) = sqrt(proposal * exp(log_prob)), text_tokens (K,L),
    log_probs (K,)}, sorted by `scores` (stable)."""
    props = postprocess(head(enc["features"]), enc["image_hw"], {NAME: head.c})
    out = []
    for i, (boxes, pscores) in enumerate(props):
        k = boxes.shape[0]
        if k == 0:
            out.append({"boxes": boxes, "proposal_scores": pscores, "scores": pscores,
                        "text_tokens": torch.zeros(0, model.max_len, dtype=torch.long), "log_probs": pscores})
            continue
        sub = {key: (v[i:i + 1] if torch.is_tensor(v) else v) for key, v in enc.items()}
        vis = model.visual_tokens(sub, boxes[None])
        ctx = context_tokens.long()[None, None].expand(1, k, -1)
        gen = model.generate(sub, vis, ctx, **decode)
        lp = gen["log_probs"][0]
        sc = torch.sqrt(pscores.clamp(min=0) * torch.exp(lp))
        order = torch.sort(-sc, stable=True).indices
        out.append({"boxes": boxes[order], "proposal_scores": pscores[order], "scores": sc[order],
                    "text_tokens": gen["text_tokens"][0][order], "log_probs": lp[order]})
    return out
