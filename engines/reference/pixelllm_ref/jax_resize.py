"""Exact port of `jax.image.resize` (methods 'linear'/'bilinear' and 'cubic'/'bicubic') as weight matrices.

The official PixelLLM code resizes with `jax.image.resize(x, shape, method)` and jax's default `antialias=True`:
EVA02 position embedding 16->27 (bicubic), SAM position embedding 64->24 (bicubic), SAM relative-position tables
of global blocks 127->47 (linear), SAM features 24->27 before the channel concat (bicubic).

jax resizes through `scale_and_translate` (jax/_src/image/scale.py) with scale = out/in and translation 0, one
weight matrix per axis whose size changes (axes of equal size are left untouched). For an axis of input size m
and output size n, output sample j sits at input coordinate s_j = (j + 0.5) * m / n - 0.5; the weight of input
pixel i is k(|s_j - i| / ks), with ks = max(m / n, 1) when antialiasing (the kernel widens when downsampling) and 1
otherwise. k is the triangle kernel max(0, 1 - |x|) ('linear') or the Keys cubic kernel with a = -0.5 ('cubic').
There is no edge clamping: only the m real pixels carry weight, and each column is divided by its own sum (a
column whose |sum| <= 1000 * float32 eps becomes all zero), then columns whose sample falls outside
[-0.5, m - 0.5] are zeroed.

jax evaluates all of this in float32 (the dtype of `scale`). `weight_matrix(..., arithmetic="float32")` (the
default) repeats those float32 steps with numpy and matches jax's own matrices to a few float32 ulps (<= 6e-7 for
16->27, 64->24, 24->27, 127->47); `arithmetic="float64"` evaluates the same formula in float64 (the exact-math
matrix; it differs from jax by up to ~4e-5 for long linear downsamplings such as 384->300, because jax's float32
sample positions drift). Both are returned as float64 arrays (out, in) and can be applied with numpy or torch; the
native runtime ports the float32 arithmetic.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_LINEAR = ("linear", "bilinear", "trilinear", "triangle")
_CUBIC = ("cubic", "bicubic", "tricubic")


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(x.dtype.type(0), x.dtype.type(1) - np.abs(x))


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5, evaluated at x >= 0 in x's dtype."""
    t = x.dtype.type
    near = ((t(1.5) * x - t(2.5)) * x) * x + t(1)
    far = ((t(-0.5) * x + t(2.5)) * x - t(4)) * x + t(2)
    return np.where(x >= t(2), t(0), np.where(x >= t(1), far, near)).astype(x.dtype)


def _kernel(method: str):
    if method in _LINEAR:
        return _triangle
    if method in _CUBIC:
        return _keys_cubic
    raise ValueError(f"jax_resize: unsupported method {method!r} (use 'linear'/'bilinear' or 'cubic'/'bicubic')")


def weight_matrix(in_size: int, out_size: int, method: str, antialias: bool = True,
                  arithmetic: str = "float32") -> np.ndarray:
    """(out_size, in_size) float64 matrix W with resized = W @ x along one axis, as jax.image.resize computes it.

    arithmetic: "float32" repeats jax's float32 evaluation (default), "float64" evaluates the formula exactly.
    When in_size == out_size jax does not resample that axis at all; this returns the identity for that case.
    """
    in_size, out_size = int(in_size), int(out_size)
    if in_size <= 0 or out_size <= 0:
        raise ValueError(f"jax_resize: sizes must be positive, got {in_size} -> {out_size}")
    if arithmetic not in ("float32", "float64"):
        raise ValueError(f"jax_resize: arithmetic must be 'float32' or 'float64', got {arithmetic!r}")
    kernel = _kernel(method)
    if in_size == out_size:
        return np.eye(out_size, dtype=np.float64)
    t = np.float32 if arithmetic == "float32" else np.float64
    scale = t(out_size / in_size)           # python double -> the working dtype, as jax promotes it
    inv_scale = t(1) / scale
    kernel_scale = max(inv_scale, t(1)) if antialias else t(1)
    sample = (np.arange(out_size, dtype=t) + t(0.5)) * inv_scale - t(0.5)        # (n,) input coordinate
    dist = np.abs(sample[:, None] - np.arange(in_size, dtype=t)[None, :])        # (n, m)
    w = kernel(dist / kernel_scale)
    total = w.sum(axis=1, keepdims=True, dtype=t)
    ok = np.abs(total) > t(1000.0 * float(np.finfo(np.float32).eps))
    w = np.where(ok, w / np.where(total != 0, total, t(1)), t(0))
    inside = (sample >= t(-0.5)) & (sample <= t(in_size - 0.5))
    return np.where(inside[:, None], w, t(0)).astype(np.float64)


def _changed_axes(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    if len(in_shape) != len(out_shape):
        raise ValueError(f"jax_resize: shape rank mismatch {tuple(in_shape)} -> {tuple(out_shape)}")
    return [d for d in range(len(in_shape)) if int(in_shape[d]) != int(out_shape[d])]


def resize_np(x: np.ndarray, shape: Sequence[int], method: str, antialias: bool = True,
              dtype=np.float64, arithmetic: str = "float32") -> np.ndarray:
    """numpy equivalent of `jax.image.resize(x, shape, method, antialias)`; applies the matrices in `dtype`."""
    out = np.asarray(x, dtype=dtype)
    for d in _changed_axes(out.shape, shape):
        w = weight_matrix(out.shape[d], shape[d], method, antialias, arithmetic).astype(dtype)
        out = np.moveaxis(np.tensordot(w, np.moveaxis(out, d, 0), axes=(1, 0)), 0, d)
    return out


def resize_torch(x, shape: Sequence[int], method: str, antialias: bool = True, arithmetic: str = "float32"):
    """torch equivalent of `jax.image.resize`: applies the matrices in x's dtype (float32 like jax)."""
    import torch

    out = x
    for d in _changed_axes(tuple(out.shape), shape):
        w = torch.from_numpy(weight_matrix(out.shape[d], shape[d], method, antialias, arithmetic)).to(out.dtype).to(out.device)
        out = torch.movedim(torch.tensordot(w, torch.movedim(out, d, 0), dims=([1], [0])), 0, d)
    return out
