"""Per-branch image normalisation, following the official `pixel_llm/modeling/utils.py::preprocess` and the
constants of `pixel_llm/modeling/pixel_llm.py` (GIT_* for the EVA02 branch, SAM_* for the SAM branch).

The official order is: x = (image - mean) / std in float32; x *= padding_mask (padded pixels become exactly 0);
then, only when the image is not already `image_size`, a `jax.image.resize(..., 'bilinear')` (antialiased) down to
`image_size` (the official code asserts the target is not larger than the input).
Images are (B, H, W, 3) float RGB in 0..255, NHWC; padding_mask is (B, H, W) with 1 = valid pixel.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .jax_resize import resize_torch

# pixel_llm.py: GIT_PIXEL_MEAN / GIT_PIXEL_STD are the CLIP statistics times 255 (used for the EVA02 branch).
EVA02_PIXEL_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
EVA02_PIXEL_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)
# pixel_llm.py: SAM_PIXEL_MEAN / SAM_PIXEL_STD (ImageNet statistics in 0..255).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def normalize(images: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float],
              padding_mask: torch.Tensor | None = None, image_size: Sequence[int] | None = None) -> torch.Tensor:
    """utils.preprocess: (B,H,W,3) 0..255 -> normalised (B,h,w,3) float32, padded pixels 0."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"preprocess: images must be (B,H,W,3), got {tuple(images.shape)}")
    x = images.to(torch.float32)
    mean = torch.tensor(pixel_mean, dtype=torch.float32).reshape(1, 1, 1, 3)
    std = torch.tensor(pixel_std, dtype=torch.float32).reshape(1, 1, 1, 3)
    x = (x - mean) / std
    if padding_mask is not None:
        if tuple(padding_mask.shape) != tuple(images.shape[:3]):
            raise ValueError(f"preprocess: padding_mask {tuple(padding_mask.shape)} does not match images "
                             f"{tuple(images.shape)}")
        x = x * padding_mask.to(torch.float32)[..., None]
    if image_size is not None and tuple(x.shape[1:3]) != tuple(image_size):
        h, w = int(image_size[0]), int(image_size[1])
        if h > x.shape[1] or w > x.shape[2]:
            raise ValueError(f"preprocess: image {tuple(x.shape[1:3])} is smaller than image_size {(h, w)}; "
                             "pad it to image_size first (the official code only downsamples)")
        x = resize_torch(x, (x.shape[0], h, w, 3), "bilinear")
    return x


def preprocess_sam(images, padding_mask=None, image_size=None, pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD):
    """The SAM branch input (official `forward_backbones`, sam_preprocess_args)."""
    return normalize(images, pixel_mean, pixel_std, padding_mask, image_size)


def preprocess_eva02(images, padding_mask=None, image_size=None, pixel_mean=EVA02_PIXEL_MEAN,
                     pixel_std=EVA02_PIXEL_STD):
    """The EVA02 ("git") branch input (official `forward_backbones`, git_preprocess_args)."""
    return normalize(images, pixel_mean, pixel_std, padding_mask, image_size)
