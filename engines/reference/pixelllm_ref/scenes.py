"""Synthetic "shapes world" scenes: deterministic images + every PixelLLM annotation, from one integer seed.

A scene (`make_scene(seed)`) has a native size of 200..640 px per side (aspect ratio <= 2), a textured background and
2..6 objects, each one of 6 shapes x 6 colours x 3 sizes, painted back to front (overlaps allowed, every object keeps
>= 50% of its area visible). Per object: box + occlusion-aware mask (see scene_render), a referring expression that is
unique in the image (plus every other unique alternative), and a region caption ("a small red circle").
Per image: a narrative caption with Localized-Narratives-style word utterances (start/end times) and a mouse trace
(normalised x, y, t) that circles each object while it is being mentioned; `trace_to_utterance_boxes` is the port of
the official `tools/build_ln_tfrecord.py: trace2coord` that turns them into per-utterance centres and boxes.

Grammar (every word is in the demo tokenizer, see tokenizer.scene_words()):
  expression  := "the" [size] [colour] shape [position]      e.g. "the large blue square", "the star on the left"
  position    := "on the left" | "on the right" | "at the top" | "at the bottom"   (only between 2 look-alikes)
  caption     := ("a" | "an") size colour shape               e.g. "a small red circle", "an ... " never (sizes first)
  narrative   := opener clause ["and" clause] "." {opener2 clause ["and" clause] "."} [background sentence]
  clause      := mention [where] | mention relation mention
  relation    := "above" | "below" | "to the left of" | "to the right of" | "next to" | "in front of" | "behind"
Determinism: only a seeded numpy Generator and exact arithmetic (no trig); the same seed gives identical bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .scene_render import EXTENT, Rendering, render

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
COLOURS = {"red": (214, 40, 40), "green": (44, 160, 60), "blue": (40, 88, 216),
           "yellow": (236, 204, 40), "purple": (136, 60, 184), "orange": (242, 134, 28)}
SIZES = {"small": (0.055, 0.072), "medium": (0.092, 0.115), "large": (0.14, 0.175)}  # radius / min(W, H)
TEXTURES = ("plain", "noisy", "shaded", "striped", "spotted")
OPENERS = ("in this picture we can see", "in this image there is", "this picture shows", "in this image we can see")
OPENERS2 = ("there is also", "we can also see", "i can also see", "next there is")
RELATIONS = ("above", "below", "to the left of", "to the right of", "next to", "in front of", "behind")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom")
PLACES = ("on the left", "on the right", "at the top", "at the bottom", "in the middle", "in the top left corner",
          "in the top right corner", "in the bottom left corner", "in the bottom right corner")
REFER_PREFIX = "where is"        # official context_prefix 'where is ' (configs/*ref*.py)
NARRATIVE_PROMPT = "a long image caption:"  # official LN prompt 'A long image caption: ' (lower-cased by BERT)
REGION_PROMPT = "an object of"   # official VG/densecap prompt 'an object of '
# A closed loop (16 points of the unit circle, decimal constants) the mouse follows over a mentioned object.
LOOP = np.array([(1.0, 0.0), (0.92388, 0.382683), (0.707107, 0.707107), (0.382683, 0.92388), (0.0, 1.0),
                 (-0.382683, 0.92388), (-0.707107, 0.707107), (-0.92388, 0.382683), (-1.0, 0.0),
                 (-0.92388, -0.382683), (-0.707107, -0.707107), (-0.382683, -0.92388), (0.0, -1.0),
                 (0.382683, -0.92388), (0.707107, -0.707107), (0.92388, -0.382683)])
TRACE_HZ = 20.0
NARRATIVE_MAX_TOKENS = 90  # words + '.' tokens (the demo tokenizer has one token per grammar word); +bos/eos <= 92


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float           # centre, native pixels
    cy: float
    r: float            # radius, native pixels
    rgb: tuple
    expression: str = ""                               # the chosen unique referring expression
    expressions: list = field(default_factory=list)    # every unique expression the grammar allows
    caption: str = ""                                  # region caption


@dataclass
class Layout:
    """Resolution-free scene description (geometry in native pixels, language, trace)."""
    seed: int
    width: int
    height: int
    background: dict
    objects: list
    narrative: str = ""
    utterances: list = field(default_factory=list)   # words of the narrative (LN 'utterance')
    utt_times: np.ndarray = None                       # (U, 2) start, end seconds
    utt_focus: list = field(default_factory=list)     # object index each utterance talks about, -1 = none
    trace: np.ndarray = None                           # (T, 3) x, y normalised to [0, 1], t seconds


@dataclass
class Scene:
    layout: Layout
    rendering: Rendering   # at the native size

    @property
    def image(self):
        return self.rendering.image


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_scene(seed: int) -> Scene:
    layout = make_layout(seed)
    return Scene(layout=layout, rendering=render(layout, layout.height, layout.width))


def make_layout(seed: int, max_tries: int = 200) -> Layout:
    """Samples until every object has a unique expression; raises if that never happens."""
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        layout = _sample_geometry(rng, seed)
        if layout is None:
            continue
        full = render(layout, layout.height, layout.width, supersample=1, masks_only=True).full_masks
        if not _assign_expressions(layout, rng):
            continue
        _make_narrative(layout, full, rng)
        return layout
    raise RuntimeError(f"scene seed {seed}: no valid layout in {max_tries} tries")


def _sample_geometry(rng, seed):
    while True:
        w, h = int(rng.integers(200, 641)), int(rng.integers(200, 641))
        if max(w, h) <= 2 * min(w, h):
            break
    tex = TEXTURES[int(rng.integers(len(TEXTURES)))]
    grey = float(rng.integers(60, 205))
    bg = {"texture": tex, "rgb": [grey + float(rng.integers(-10, 11)) for _ in range(3)],
          "tone": "light" if grey >= 130 else "dark", "noise": 14 if tex == "noisy" else 3}
    if tex in ("shaded", "striped"):
        d = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)][int(rng.integers(3))]
        bg["dir"] = d
        bg["amplitude"] = float(rng.integers(18, 40)) if tex == "shaded" else float(rng.integers(6, 14))
        bg["span"] = (0.0, w * d[0] + h * d[1])
        bg["period"] = float(rng.integers(10, 36))
    if tex == "spotted":
        gh, gw = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        bg["grid"] = rng.integers(-22, 23, size=(gh + 1, gw + 1)).astype(float).tolist()
        bg["cell"] = (w / gw, h / gh)
    layout = Layout(seed=seed, width=w, height=h, background=bg, objects=[])
    n = int(rng.integers(2, 7))
    m = min(w, h)
    for _ in range(n):
        for _try in range(60):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            size = list(SIZES)[int(rng.integers(len(SIZES)))]
            lo, hi = SIZES[size]
            r = m * (lo + (hi - lo) * rng.random())
            ext = EXTENT[shape] * r + 2
            if layout.objects and rng.random() < 0.35:  # near an earlier object: creates overlaps
                other = layout.objects[int(rng.integers(len(layout.objects)))]
                cx = other.cx + (rng.random() * 2 - 1) * 1.3 * (other.r + r)
                cy = other.cy + (rng.random() * 2 - 1) * 1.3 * (other.r + r)
            else:
                cx, cy = ext + (w - 2 * ext) * rng.random(), ext + (h - 2 * ext) * rng.random()
            if not (ext <= cx <= w - ext and ext <= cy <= h - ext):
                continue
            rgb = tuple(int(np.clip(c + rng.integers(-14, 15), 0, 255)) for c in COLOURS[colour])
            cand = SceneObject(shape, colour, size, float(cx), float(cy), float(r), rgb)
            layout.objects.append(cand)
            rend = render(layout, h, w, supersample=1, masks_only=True)
            full_area = rend.full_masks.sum(axis=(1, 2))
            vis_area = rend.masks.sum(axis=(1, 2))
            if np.all(vis_area >= 0.5 * full_area) and np.all(vis_area >= 40):
                break
            layout.objects.pop()
        else:
            return None
    return layout


def _same(a, b, attrs):
    return all(getattr(a, k) == getattr(b, k) for k in attrs)


def _assign_expressions(layout: Layout, rng) -> bool:
    objs, w, h = layout.objects, layout.width, layout.height
    attr_sets = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))
    for o in objs:
        o.caption = f"{article(o.size)} {o.size} {o.colour} {o.shape}"
        cands = []
        for attrs in attr_sets:
            words = " ".join(getattr(o, k) for k in ("size", "colour", "shape") if k in attrs)
            twins = [p for p in objs if _same(o, p, attrs)]
            if len(twins) == 1:
                cands.append(f"the {words}")
            elif len(twins) == 2:
                p = twins[0] if twins[1] is o else twins[1]
                if abs(o.cx - p.cx) >= 0.15 * w:
                    cands.append(f"the {words} {'on the left' if o.cx < p.cx else 'on the right'}")
                if abs(o.cy - p.cy) >= 0.15 * h:
                    cands.append(f"the {words} {'at the top' if o.cy < p.cy else 'at the bottom'}")
        if not cands:
            return False
        o.expressions = sorted(set(cands), key=cands.index)
        o.expression = o.expressions[int(rng.integers(len(o.expressions)))]
    return True


def _place(o, w, h) -> str:
    x, y = o.cx / w, o.cy / h
    col = "left" if x < 0.35 else "right" if x > 0.65 else ""
    row = "top" if y < 0.35 else "bottom" if y > 0.65 else ""
    if col and row:
        return f"in the {row} {col} corner"
    if col:
        return f"on the {col}"
    return f"at the {row}" if row else "in the middle"


def _relation(a: int, b: int, layout: Layout, full: np.ndarray, rng) -> str:
    oa, ob = layout.objects[a], layout.objects[b]
    if np.any(full[a] & full[b]):
        return "in front of" if a > b else "behind"
    dx, dy = (ob.cx - oa.cx) / layout.width, (ob.cy - oa.cy) / layout.height
    if (dx * dx + dy * dy) < 0.09 and rng.random() < 0.3:
        return "next to"
    if abs(dy) > abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


def _mention(o, rng) -> str:
    words = [o.size, o.colour, o.shape] if rng.random() < 0.7 else [o.colour, o.shape]
    return f"{article(words[0])} {' '.join(words)}"


def _make_narrative(layout: Layout, full: np.ndarray, rng) -> None:
    """Narrative + word utterances + per-word focus (re-drawn until it fits NARRATIVE_MAX_TOKENS), then the trace."""
    for _ in range(50):
        words, focus = _narrative_words(layout, full, rng)
        if len(words) + sum(w.endswith(".") for w in words) <= NARRATIVE_MAX_TOKENS:
            break
    else:
        raise RuntimeError(f"scene {layout.seed}: narrative longer than {NARRATIVE_MAX_TOKENS} tokens")
    layout.narrative = " ".join(words)
    layout.utterances, layout.utt_focus = words, focus
    layout.utt_times, layout.trace = _make_trace(layout, full, words, focus, rng)


def _narrative_words(layout: Layout, full: np.ndarray, rng):
    objs = layout.objects
    key = (lambda i: objs[i].cx) if rng.random() < 0.5 else (lambda i: objs[i].cy)
    order = sorted(range(len(objs)), key=key)
    words, focus = [], []

    def say(text, f=-1):
        for t in text.split():
            words.append(t)
            focus.append(f)

    i, first = 0, True
    while i < len(order):
        say(OPENERS[int(rng.integers(len(OPENERS)))] if first else OPENERS2[int(rng.integers(len(OPENERS2)))])
        first = False
        for c in range(1 + int(rng.random() < 0.5)):
            if i >= len(order):
                break
            if c:
                say("and")
            a = order[i]
            say(_mention(objs[a], rng), a)
            if i + 1 < len(order) and rng.random() < 0.5:
                b = order[i + 1]
                say(_relation(a, b, layout, full, rng))
                say(_mention(objs[b], rng), b)
                i += 2
            else:
                if rng.random() < 0.7:
                    say(_place(objs[a], layout.width, layout.height), a)
                i += 1
        words[-1] += "."
    if rng.random() < 0.5:
        tex = layout.background["texture"]
        say("the background is " + layout.background["tone"] + ("" if tex == "plain" else f" and {tex}") + ".", -2)
    return words, focus


def _make_trace(layout, full, words, focus, rng):
    """Word timings (speech) and a 20 Hz mouse trace that loops over each object while it is mentioned."""
    times, t = [], 0.0
    for wd in words:
        d = 0.16 + 0.045 * len(wd) + 0.08 * rng.random()
        times.append((t, t + d))
        t += d + 0.06 * rng.random() + (0.3 if wd.endswith(".") else 0.0)
    times = np.asarray(times)
    ts = np.arange(int(np.ceil((t + 0.4) * TRACE_HZ)) + 1) / TRACE_HZ - 0.2
    known_t, known_x, known_y = [ts[0]], [0.15 + 0.7 * rng.random()], [0.15 + 0.7 * rng.random()]
    h, w = full.shape[1:]
    phase = int(rng.integers(16))
    used = np.zeros(len(ts), dtype=bool)
    for k, f in enumerate(focus):
        sel = (ts >= times[k, 0] - 0.05) & (ts <= times[k, 1] + 0.05) & ~used
        if f == -1 or not sel.any():
            continue
        used |= sel
        if f == -2:  # the background: sweep across the image in a zigzag
            tt = ts[sel]
            u = (tt - tt[0]) / max(tt[-1] - tt[0], 1e-6)
            known_t += list(tt)
            known_x += list(0.1 + 0.8 * u)
            known_y += list(0.15 + 0.7 * np.abs(np.mod(u * 3.0, 2.0) - 1.0))
            continue
        vis = full[f] & ~np.any(full[f + 1:], axis=0) if f + 1 < len(full) else full[f]
        ys, xs = np.nonzero(vis)
        cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
        rx, ry = 0.3 * (xs.max() + 1 - xs.min()) / w, 0.3 * (ys.max() + 1 - ys.min()) / h
        for tt in ts[sel]:
            p = LOOP[phase % 16]
            phase += 1
            known_t.append(tt)
            known_x.append(cx + rx * p[0] + 0.004 * (rng.random() * 2 - 1))
            known_y.append(cy + ry * p[1] + 0.004 * (rng.random() * 2 - 1))
    known_t.append(ts[-1])
    known_x.append(known_x[-1])
    known_y.append(known_y[-1])
    kt = np.asarray(known_t)
    idx = np.argsort(kt, kind="stable")
    kt, kx, ky = kt[idx], np.asarray(known_x)[idx], np.asarray(known_y)[idx]
    xs = np.clip(np.interp(ts, kt, kx), 0.0, 1.0)
    ys = np.clip(np.interp(ts, kt, ky), 0.0, 1.0)
    return times, np.stack([xs, ys, ts], axis=1)


def trace_to_utterance_boxes(trace: np.ndarray, utt_times: np.ndarray, num_samples: int = 16):
    """Port of official tools/build_ln_tfrecord.py `trace2coord` (+ the float32 storage of the tfrecord).

    For each utterance, the trace is linearly interpolated at `num_samples` times spread over [start, end]; the centre
    is the time-average (trapezoid integral / duration, or the plain mean for a zero-length utterance) and the box is
    min/max of the samples. Returns centres (U, 2) and boxes (U, 4) x0, y0, x1, y1, normalised coordinates, float32.
    """
    order = np.argsort(trace[:, 2], kind="stable")
    t_arr, x_arr, y_arr = trace[order, 2], trace[order, 0], trace[order, 1]
    if t_arr[0] > utt_times.min() or t_arr[-1] < utt_times.max():
        raise ValueError("trace does not cover the utterance times (the official code extrapolates; we refuse)")
    centres, boxes = [], []
    for start, end in utt_times:
        tv = np.linspace(start, end, num=num_samples)
        xv, yv = np.interp(tv, t_arr, x_arr), np.interp(tv, t_arr, y_arr)
        if tv[-1] - tv[0] < 1e-5:
            cx, cy = np.mean(xv), np.mean(yv)
        else:
            cx = np.trapezoid(xv, tv) / (tv[-1] - tv[0])
            cy = np.trapezoid(yv, tv) / (tv[-1] - tv[0])
        centres.append((cx, cy))
        boxes.append((xv.min(), yv.min(), xv.max(), yv.max()))
    return np.asarray(centres, dtype=np.float32), np.asarray(boxes, dtype=np.float32)


def annotations(scene: Scene) -> dict:
    """JSON-ready annotations of a scene at its native size (masks as COCO RLE via pycocotools)."""
    from pycocotools import mask as mask_utils

    lay, rend = scene.layout, scene.rendering
    objs = []
    for k, o in enumerate(lay.objects):
        rle = mask_utils.encode(np.asfortranarray(rend.masks[k].astype(np.uint8)))
        objs.append({"shape": o.shape, "colour": o.colour, "size": o.size,
                     "box": [float(v) for v in rend.boxes[k]],
                     "mask_rle": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                     "area": int(rend.masks[k].sum()), "expression": o.expression,
                     "expressions": list(o.expressions), "caption": o.caption})
    centres, boxes = trace_to_utterance_boxes(lay.trace, lay.utt_times)
    return {"seed": lay.seed, "width": lay.width, "height": lay.height,
            "background": {"texture": lay.background["texture"], "tone": lay.background["tone"]},
            "objects": objs, "narrative": lay.narrative,
            "timed_caption": [{"utterance": u, "start_time": round(float(a), 4), "end_time": round(float(b), 4)}
                              for u, (a, b) in zip(lay.utterances, lay.utt_times)],
            "trace": [{"x": round(float(x), 5), "y": round(float(y), 5), "t": round(float(t), 4)}
                      for x, y, t in lay.trace],
            "utterance_centres": centres.round(5).tolist(), "utterance_boxes": boxes.round(5).tolist()}


def write_example(seed: int, out_dir, name: str) -> None:
    """examples/: <name>.png (the scene at its native size) + <name>.json (annotations())."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sc = make_scene(seed)
    write_png(out / f"{name}.png", sc.image)
    ann = {"generator": f"pixelllm_ref.scenes.write_example({seed}, out_dir, {name!r})", **annotations(sc)}
    (out / f"{name}.json").write_text(json.dumps(ann, indent=1) + "\n")


def write_png(path, rgb: np.ndarray) -> None:
    """Writes an (h, w, 3) uint8 array as PNG with Pillow."""
    from PIL import Image

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"write_png wants (h, w, 3) uint8, got {arr.dtype} {arr.shape}")
    Image.fromarray(arr, mode="RGB").save(str(path), format="PNG")
