"""Low-res mask logits -> a binary mask at the original image size, the two ways the native runtime offers
(`LoadOptions.maskResize`, native/pipeline/masks.h), both bilinear with half-pixel centres and no antialiasing
(torch interpolate(align_corners=False) = cv2.INTER_LINEAR), threshold 0:
  "sam"        segment-anything's postprocess_masks, the geometry training uses (the mask loss resizes the low-res
               logits to the padded input): resize to (padded, padded), keep [:valid_h, :valid_w], resize to the
               original size;
  "evaluator"  the official PixelLLM evaluator (scenic pixel_llm/evaluators.py rescale_and_encode_masks): crop the
               low-res logits to [:int(valid_h * mh / padded), :int(valid_w * mw / padded)] and resize the crop to the
               original size (the truncated crop is stretched over the image where valid * mh / padded is not whole).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("sam", "evaluator")


def upsample_logits(logits: np.ndarray, valid_hw, padded: int, orig_hw, mode: str = "sam") -> torch.Tensor:
    """(mh, mw) low-res logits -> (orig_h, orig_w) float32 logits."""
    if mode not in MODES:
        raise ValueError(f"mask post-processing mode must be one of {MODES}, got {mode!r}")
    mh, mw = logits.shape
    x = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None, None]
    size = tuple(int(v) for v in orig_hw)
    if mode == "sam":
        up = F.interpolate(x, size=(padded, padded), mode="bilinear", align_corners=False)
        up = up[..., : int(valid_hw[0]), : int(valid_hw[1])].contiguous()
        return F.interpolate(up, size=size, mode="bilinear", align_corners=False)[0, 0]
    ch = max(1, int(valid_hw[0] * (mh / padded)))
    cw = max(1, int(valid_hw[1] * (mw / padded)))
    return F.interpolate(x[..., :ch, :cw].contiguous(), size=size, mode="bilinear", align_corners=False)[0, 0]


def postprocess_mask(logits: np.ndarray, valid_hw, padded: int, orig_hw, mode: str = "sam"
                     ) -> tuple[np.ndarray, float]:
    """-> (bool mask (orig_h, orig_w), fraction of pixels whose logit is within 1e-3 of the threshold)."""
    up = upsample_logits(logits, valid_hw, padded, orig_hw, mode)
    return (up > 0).numpy(), float((up.abs() < 1e-3).float().mean())
