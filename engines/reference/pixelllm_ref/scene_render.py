"""Rasteriser for the synthetic "shapes world" scenes (numpy only, bit-exact across machines).

Geometry lives in the scene's native pixel frame (width x height). `render` draws it at ANY output size by mapping
output pixel sample points back to the native frame (x_native = x_out * W / w_out), which is exactly the geometric
transform the official `transforms.resize` applies to boxes/points (x * r_width, y * r_height). So a scene rendered at
the resized size equals "render natively, then resize" up to resampling blur, and needs no resampling at all.

Bit-exactness: only +, -, *, /, comparisons and the PCG64 stream of a seeded `numpy.random.Generator` are used at
pixel level (no sin/cos/exp whose last ulp differs between libm builds); shape outlines use decimal constants.
Anti-aliasing: `supersample` x `supersample` samples per pixel; coverage blends colours; an object's mask is
coverage >= 0.5, and its visible mask removes the pixels covered (>= 0.5) by objects painted later.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SQRT3 = 1.7320508075688772
# Unit 5-point star (outer radius 1, inner 0.45), first vertex pointing up; y grows downwards.
STAR = np.array([
    (0.000000, -1.000000), (0.264503, -0.364058), (0.951057, -0.309017), (0.427975, 0.139058),
    (0.587785, 0.809017), (0.000000, 0.450000), (-0.587785, 0.809017), (-0.427975, 0.139058),
    (-0.951057, -0.309017), (-0.264503, -0.364058)], dtype=np.float64)
# Extent of each shape relative to its radius r (half-size of its bounding square, used for windows/placement).
EXTENT = {"circle": 1.0, "ring": 1.0, "square": 0.82, "triangle": 1.15, "star": 1.15, "cross": 1.0}


@dataclass
class Rendering:
    image: np.ndarray      # (h, w, 3) uint8
    masks: np.ndarray      # (n, h, w) bool, visible part of each object (occlusion-aware)
    full_masks: np.ndarray  # (n, h, w) bool, whole shape ignoring occluders
    boxes: np.ndarray      # (n, 4) float32 x0, y0, x1, y1 in output pixels (pixel edges: x1 = last column + 1)


def shape_inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean 'point inside shape' for offsets (dx, dy) from the shape centre, native pixels."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) * (0.55 * r))
    if shape == "square":
        a = 0.82 * r
        return (np.abs(dx) <= a) & (np.abs(dy) <= a)
    if shape == "triangle":  # equilateral, pointing up, circumradius R
        big_r = 1.15 * r
        return (dy <= 0.5 * big_r) & (SQRT3 * np.abs(dx) <= dy + big_r)
    if shape == "cross":
        a = 0.33 * r
        adx, ady = np.abs(dx), np.abs(dy)
        return ((adx <= a) & (ady <= r)) | ((ady <= a) & (adx <= r))
    if shape == "star":  # even-odd crossing test on the 10-gon
        big_r = 1.15 * r
        vx, vy = STAR[:, 0] * big_r, STAR[:, 1] * big_r
        inside = np.zeros(np.broadcast(dx, dy).shape, dtype=bool)
        for k in range(len(vx)):
            x1, y1, x2, y2 = vx[k], vy[k], vx[k - 1], vy[k - 1]
            if y1 == y2:
                continue
            crosses = (y1 > dy) != (y2 > dy)
            xint = (x2 - x1) * (dy - y1) / (y2 - y1) + x1
            inside ^= crosses & (dx < xint)
        return inside
    raise ValueError(f"unknown shape {shape!r}")


def _background(bg: dict, seed: int, h: int, w: int, sx: float, sy: float) -> np.ndarray:
    """(h, w, 3) float32 background; texture defined in native coordinates, per-pixel noise from a size-keyed stream."""
    xs = (np.arange(w, dtype=np.float64) + 0.5) / sx
    ys = (np.arange(h, dtype=np.float64) + 0.5) / sy
    base = np.asarray(bg["rgb"], dtype=np.float64)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    tex = bg["texture"]
    if tex == "shaded":
        x0, x1 = bg["span"]
        t = (xs[None, :] * bg["dir"][0] + ys[:, None] * bg["dir"][1] - x0) / (x1 - x0)
        img += (np.clip(t, 0.0, 1.0) - 0.5)[..., None] * bg["amplitude"]
    elif tex == "striped":
        u = xs[None, :] * bg["dir"][0] + ys[:, None] * bg["dir"][1]
        phase = np.mod(u, bg["period"]) / bg["period"]
        img += np.where(phase < 0.5, 1.0, -1.0)[..., None] * bg["amplitude"]
    elif tex == "spotted":
        grid = np.asarray(bg["grid"], dtype=np.float64)  # (gh, gw) offsets on a native-frame lattice
        gh, gw = grid.shape
        gx = np.clip(xs / bg["cell"][0], 0.0, gw - 1.000001)
        gy = np.clip(ys / bg["cell"][1], 0.0, gh - 1.000001)
        ix, iy = gx.astype(np.int64), gy.astype(np.int64)
        fx, fy = gx - ix, gy - iy
        top = grid[iy][:, ix] * (1 - fx)[None, :] + grid[iy][:, ix + 1] * fx[None, :]
        bot = grid[iy + 1][:, ix] * (1 - fx)[None, :] + grid[iy + 1][:, ix + 1] * fx[None, :]
        img += (top * (1 - fy)[:, None] + bot * fy[:, None])[..., None]
    elif tex not in ("plain", "noisy"):
        raise ValueError(f"unknown background texture {tex!r}")
    rng = np.random.default_rng([seed, 7, h, w])
    amp = bg["noise"]
    img += rng.integers(-amp, amp + 1, size=(h, w, 3)).astype(np.float64)
    return img


def render(layout, height: int, width: int, supersample: int = 2, masks_only: bool = False) -> Rendering:
    """Draw `layout` (a scenes.Layout) at (height, width) output pixels; `masks_only` skips the colours."""
    if height < 8 or width < 8:
        raise ValueError(f"render size too small: {height}x{width}")
    sx, sy = width / layout.width, height / layout.height
    img = None if masks_only else _background(layout.background, layout.seed, height, width, sx, sy)
    n = len(layout.objects)
    full = np.zeros((n, height, width), dtype=bool)
    offs = (np.arange(supersample, dtype=np.float64) + 0.5) / supersample
    for k, ob in enumerate(layout.objects):
        ext = EXTENT[ob.shape] * ob.r
        c0 = max(int(np.floor((ob.cx - ext) * sx)) - 1, 0)
        c1 = min(int(np.ceil((ob.cx + ext) * sx)) + 1, width)
        r0 = max(int(np.floor((ob.cy - ext) * sy)) - 1, 0)
        r1 = min(int(np.ceil((ob.cy + ext) * sy)) + 1, height)
        if c1 <= c0 or r1 <= r0:
            continue
        cov = np.zeros((r1 - r0, c1 - c0), dtype=np.float64)
        for oy in offs:
            dy = (np.arange(r0, r1, dtype=np.float64) + oy) / sy - ob.cy
            for ox in offs:
                dx = (np.arange(c0, c1, dtype=np.float64) + ox) / sx - ob.cx
                cov += shape_inside(ob.shape, dx[None, :], dy[:, None], ob.r)
        cov /= supersample * supersample
        if img is not None:
            win = img[r0:r1, c0:c1]
            win += (np.asarray(ob.rgb, dtype=np.float64) - win) * cov[..., None]
        full[k, r0:r1, c0:c1] = cov >= 0.5
    visible = full.copy()
    for k in range(n - 2, -1, -1):
        visible[k] &= ~np.any(full[k + 1:], axis=0)
    image = None if img is None else np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)
    return Rendering(image=image, masks=visible, full_masks=full, boxes=mask_boxes(visible))


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight x0, y0, x1, y1 boxes (pixel edges) of (n, h, w) masks; an empty mask gives all zeros."""
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for k, m in enumerate(masks):
        cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
        if cols.size:
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
