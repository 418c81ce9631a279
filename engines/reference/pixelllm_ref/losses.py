"""PixelLLM training losses (text, point, SAM mask), differentiable in torch.

Follows scenic `pixel_llm/modeling/losses.py` (text_loss, point_loss, sam_mask_loss, with scenic model_utils'
focal_sigmoid_cross_entropy (alpha 0.5, gamma 2) and dice_loss (eps 1)) and `PixelLlmFlaxModel.loss_function`
(weighted sum of the terms present; `<name>_scaled` = weight * loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .jax_resize import resize_torch


def text_loss(logits: torch.Tensor, gt_text: torch.Tensor, valid: torch.Tensor | None = None,
              label_smooth: float = 0.1, end_token_id: int = 102, vocab_size: int | None = None) -> torch.Tensor:
    """logits (N,L,V) or (B,P,L,V); gt_text (B,P,L); valid (B,P) or None.

    Next-token cross entropy against GRiT-style smoothed targets (1-s on the label, s/(V-1) elsewhere), over positions
    whose target is not padding (0), of captions that are valid and not empty (first target != EOS).
    """
    v = logits.shape[-1] if vocab_size is None else vocab_size
    logits = logits.reshape(-1, logits.shape[-2], logits.shape[-1])
    gt = gt_text.reshape(-1, gt_text.shape[-1]).long()
    mask = torch.ones(gt.shape[0], device=gt.device) if valid is None else valid.reshape(-1).float()
    logits, gt = logits[:, :-1], gt[:, 1:]
    ok = (gt > 0) & (mask[:, None] > 0) & (gt[:, :1] != end_token_id)
    ok = ok.float()
    one_hot = F.one_hot(gt, v).float()
    target = one_hot * (1.0 - label_smooth) + (1.0 - one_hot) * label_smooth / (v - 1)
    ce = -(target * torch.log_softmax(logits, dim=-1)).sum(-1)
    return (ce * ok).sum() / (ok.sum() + 1e-8)


def point_loss(pred: torch.Tensor, pred_valid: torch.Tensor, gt: torch.Tensor, gt_valid: torch.Tensor,
               loss_type: str = "l1") -> torch.Tensor:
    """pred (B,P,L,K,2); pred_valid (B,P,L); gt (B,P,L,K,2) or (B,P,K,2); gt_valid (B,P,L) or (B,P)."""
    if gt.dim() == 4:
        gt = gt[:, :, None].expand_as(pred)
    if gt_valid.dim() == 2:
        gt_valid = gt_valid[:, :, None].expand(pred.shape[:3])
    if gt.shape != pred.shape or gt_valid.shape != pred_valid.shape:
        raise ValueError(f"point_loss: shapes differ {pred.shape} {gt.shape} {pred_valid.shape} {gt_valid.shape}")
    pv = pred_valid.reshape(-1).float()
    gv = gt_valid.reshape(-1).float()
    p = pred.reshape(-1, pred.shape[-2], 2)
    g = gt.reshape(-1, gt.shape[-2], 2)
    if loss_type == "l1":
        loss = (p - g).abs().mean(dim=(-2, -1))
    elif loss_type == "l2":
        loss = (p - g).square().mean(dim=(-2, -1))
    elif loss_type == "l1_nonzero":
        loss = (p - g).abs().mean(dim=(-2, -1))
        gv = gv * ((g ** 2).sum(dim=(-2, -1)) > 0).float()
    else:
        raise ValueError(f"point_loss: unknown loss type {loss_type!r}")
    denom = torch.clamp((gv * pv).sum(), min=1.0)
    return (loss * gv * pv).sum() / denom


def focal_sigmoid_cross_entropy(logits, targets, weights=None, alpha: float = 0.5, gamma: float = 2.0):
    """scenic model_utils.focal_sigmoid_cross_entropy (unreduced); weights broadcast from the leading dims."""
    loss = -(targets * F.logsigmoid(logits) + (1.0 - targets) * F.logsigmoid(-logits))
    p_t = torch.exp(-loss)
    loss = loss * (1 - p_t) ** gamma
    loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if weights is not None:
        loss = loss * weights.reshape(*weights.shape, *([1] * (loss.dim() - weights.dim())))
    return loss


def dice_loss(inputs, targets, weights=None, eps: float = 1.0):
    """scenic model_utils.dice_loss(all_pairs=False) for inputs/targets of equal size (B,N,H,W) -> (B,N)."""
    if inputs.shape != targets.shape:
        raise ValueError("dice_loss: only equal-size inputs/targets are supported (the official call resizes first)")
    b, n = inputs.shape[:2]
    x = torch.sigmoid(inputs).reshape(b, n, -1)
    t = targets.reshape(b, n, -1)
    loss = 1.0 - (2 * (x * t).sum(-1) + eps) / ((x + t).sum(-1) + eps)
    if weights is not None:
        loss = loss * weights.reshape(*weights.shape, *([1] * (loss.dim() - weights.dim())))
    return loss


def sam_mask_loss(pred_masks, pred_ious, gt_masks, gt_valid, padding_mask, focal_loss_weight: float = 20.0,
                  dice_loss_weight: float = 1.0, iou_pred_loss_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """pred_masks (B,P,M,h,w) logits, pred_ious (B,P,M), gt_masks (B,P,H,W[,1]), gt_valid (B,P), padding (B,H,W).

    Low-res logits are resized to H x W with jax bilinear; per prompt the mask with the lowest 20*focal+dice is kept;
    the IoU head regresses the IoU of (logit > 0) with the ground truth over all M masks.
    """
    if gt_masks.dim() == 5:
        gt_masks = gt_masks[..., 0]
    gt_masks = (gt_masks > 0).float()
    gt_valid = gt_valid.float()
    b, p, m = pred_masks.shape[:3]
    h, w = padding_mask.shape[1:]
    if gt_masks.shape[2:] != (h, w):
        raise ValueError(f"sam_mask_loss: gt masks {tuple(gt_masks.shape)} vs padding mask {tuple(padding_mask.shape)}")
    valid = gt_valid[:, :, None].expand(b, p, m).reshape(b, p * m, 1, 1) * padding_mask[:, None].float()
    pred = resize_torch(pred_masks.reshape(b, p * m, *pred_masks.shape[3:]), (b, p * m, h, w), "bilinear")
    gt = gt_masks[:, :, None].expand(b, p, m, h, w).reshape(b, p * m, h, w)

    focal = focal_sigmoid_cross_entropy(pred, gt, weights=valid).sum(dim=(2, 3))
    focal = (focal / torch.clamp(valid.sum(dim=(2, 3)), min=1.0)).reshape(b, p, m)
    dice = dice_loss(pred, gt, weights=(valid.amax(dim=(-2, -1)) > 0).float()).reshape(b, p, m)

    per_mask = focal * focal_loss_weight + dice * dice_loss_weight
    best = per_mask.argmin(dim=-1, keepdim=True)
    denom = torch.clamp(gt_valid.sum(), min=1.0)
    mask_loss = (per_mask.gather(-1, best)[..., 0] * gt_valid).sum() / denom
    focal_best = (focal.gather(-1, best)[..., 0] * gt_valid).sum() / denom
    dice_best = (dice.gather(-1, best)[..., 0] * gt_valid).sum() / denom

    with torch.no_grad():
        inter = ((pred > 0) & (gt > 0)).sum(dim=(-2, -1)).float()
        union = ((pred > 0) | (gt > 0)).sum(dim=(-2, -1)).float()
        gt_ious = (inter / torch.clamp(union, min=1.0)).reshape(b, p, m)
    iou_loss = ((gt_ious - pred_ious) ** 2 * gt_valid[..., None]).sum() / torch.clamp(
        gt_valid[..., None].expand(b, p, m).sum(), min=1.0)
    return {
        "mask_focal_loss": focal_best * focal_loss_weight,
        "mask_dice_loss": dice_best * dice_loss_weight,
        "mask_iou_pred_loss": iou_loss * iou_pred_loss_weight,
        "mask_loss": mask_loss + iou_loss,
    }


# The loss settings of the official refseg configs (configs/{bert,t5}/pixel_llm_*_refseg.py) on top of the
# PixelLlmFlaxModel defaults: these are the ones that fit a 2-point head (gt points = the 2 box corners).
DEFAULT_CONFIG = {
    "label_smooth": 0.1,
    "text_loss_weight": 1.0,
    "point_loss_weight": 0.1,
    "mask_loss_weight": 1.0,
    "point_loss_type": "l1_nonzero",
    "gt_box_points_per_side": -1,
    "gt_box_point_with_offset": False,
}


def config_from_official(official_cfg: dict) -> dict:
    """Loss settings from an official model config (absent keys: DEFAULT_CONFIG)."""
    return {k: type(v)(official_cfg.get(k, v)) for k, v in DEFAULT_CONFIG.items()}


def total_loss(metrics: dict[str, torch.Tensor], weights: dict[str, float]) -> tuple[torch.Tensor, dict]:
    """PixelLlmFlaxModel.loss_function without per-batch loss masks: adds `<name>_scaled` and `total_loss`."""
    out = dict(metrics)
    total = 0.0
    for name in ("text_loss", "det_loss", "point_loss", "mask_loss"):
        if name in metrics:
            out[name + "_scaled"] = weights.get(name, 1.0) * metrics[name]
            total = out[name + "_scaled"] + total
    out["total_loss"] = total
    return total, out
