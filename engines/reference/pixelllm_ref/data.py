"""Training batches of every PixelLLM task, built from synthetic scenes the way the official input pipeline does.

Follows the official configs/bert/pixel_llm_bert_trace_ref_densecap_llava.py sources (the _refseg_ variant adds
masks to the referring source) and io/ops.py + io/transforms.py:
  task "trace"  (Localized Narratives source): narrative caption, per-token point targets from the mouse trace,
                context "a long image caption:" + eos, prompt box = whole image;  add_task_mask(['point', 'caption']).
  task "refer"  (RefCOCO source, refseg with masks): text = expression, context "where is <expression>" + eos,
                prompt box = whole image, box + mask targets;                      add_task_mask(['point']).
  task "region" (Visual Genome densecap source): text = region caption, context "an object of" + eos,
                prompt box = the object box (the official model prompts with proposals matched to these boxes),
                proposal targets gt_boxes/gt_classes;                               add_task_mask(['detection','caption']).
Resize: the official `resize_shorter(S, S)` (transforms.resize with get_size_with_aspect_ratio(size=S, max_size=S),
float32 arithmetic, no rounding correction) gives the resized (h, w); instead of resampling pixels, the scene is
RENDERED directly at that size (scene_render maps pixels to the native frame with the same r_width/r_height the
official applies to boxes and points), then padded bottom/right with zeros to S x S (pad_images).  Masks are rendered
at the same size (the official resizes them with nearest neighbour) and padded (pad_masks).
All coordinates are absolute pixels of the resized, unpadded image (x0, y0, x1, y1 / x, y), like the official.

Batch layout (numpy; `to_torch` converts). B images, P prompts per image (1 for trace, max_prompts otherwise),
L text length, Lc context length, S = image_size.  Official model-argument names in brackets:
  images          (B,S,S,3) float32 0..255, padded pixels 0                                   [images]
  padding_mask    (B,S,S)   float32 1 = valid pixel                                            [padding_mask]
  image_hw        (B,2)     int32 resized valid (h, w)                                         [label 'size']
  prompt_boxes    (B,P,4)   float32                                                            [prompt_boxes]
  text_tokens     (B,P,L)   int32 [bos] ... [eos] 0-padded                                     [gt_text_tokens]
  context_tokens  (B,P,Lc)  int32 ... [eos] 0-padded                                           [context_tokens]
  gt_classes      (B,P)     int32 1 = real row, 0 = padding                                    [gt_classes]
  gt_boxes        (B,P,4)   float32 (zeros for trace, like the official LN source)             [gt_boxes]
  gt_point_coords (B,P,L,2,2) float32 the 2 target corners per token: trace -> from the mouse trace (ops.py
                  DecodeLocalizedNarrativesAnnotations); refer/region -> the box corners tiled over tokens
                  (what the official model builds in get_gt_points_from_boxes with gt_box_points_per_side=-1)
  point_valid_mask (B,P,L)  bool tokens whose point is supervised (official get_token_valid_mask with
                  trace_point_output_ignore='begin,end,pad' for trace, point_output_ignore='^end-1' otherwise)
  gt_masks        (B,P,S,S) bool visible-part masks (zeros where mask_valid is 0)               [gt_masks[..., 0]]
  mask_valid      (B,P)     bool rows with a mask target (refer only, as in the official mix)
  cap_loss_valid_mask, proposal_loss_valid_mask, objcap_loss_valid_mask, point_loss_valid_mask (B,) int32
                  (official AddTaskMask)
  task (str), scene_seeds (B,) int64
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scenes, tokenizer
from .scene_render import render

TASKS = ("trace", "refer", "region")
TASK_FLAGS = {  # official add_task_mask: (cap, proposal, objcap, point)
    "trace": (1, 0, 0, 1), "refer": (0, 0, 0, 1), "region": (1, 1, 1, 0)}
POINT_IGNORE = {"trace": "begin,end,pad", "refer": "^end-1", "region": "^end-1"}
TRAIN_SEEDS_END = 1_000_000_000  # scene seeds < this are for training; evaluation uses seeds >= it


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 384
    max_prompts: int = 6          # rows per image for refer/region (scenes have <= 6 objects)
    trace_text_len: int = 96      # official LN uses 128; our narratives stay below 96 tokens (checked, else raises)
    text_len: int = 16            # refer / region text (official 40)
    context_len: int = 16         # official 32
    task_weights: tuple = (("trace", 1.0), ("refer", 2.0), ("region", 1.0))

    @classmethod
    def for_model(cls, cfg: dict, **overrides) -> "DataConfig":
        """Sizes from our config.json: image_size, and narratives up to its max_caption_length tokens."""
        return cls(**{"image_size": int(cfg["image_size"]), "trace_text_len": int(cfg["max_caption_length"]),
                      **overrides})


def resized_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """Official centernet transforms.get_size_with_aspect_ratio(size, max_size=size), float32 math, as used by
    resize_shorter(size, size): the longer side becomes `size` (or size - 1 by float rounding), aspect kept."""
    f32 = np.float32
    max_o, min_o = f32(max(w, h)), f32(min(w, h))
    ratio = f32(max_o / min_o)
    small = size
    larger = int(f32(size) * ratio)
    if f32(ratio * f32(size)) > f32(size):
        small = int(np.floor(f32(f32(size) * min_o) / max_o))
        larger = int(f32(f32(small) * ratio))
    if (w <= h and w == small) or (h <= w and h == small):
        return h, w
    return (larger, small) if w < h else (small, larger)


def token_valid_mask(tokens: np.ndarray, ignore: str, bos: int, eos: int) -> np.ndarray:
    """Port of official modeling/utils.py get_token_valid_mask over the last axis."""
    neg = ignore.startswith("^")
    kinds = (ignore[1:] if neg else ignore).split(",")
    valid = np.ones(tokens.shape, dtype=bool)
    if "pad" in kinds:
        valid &= tokens > 0
    if "begin" in kinds:
        valid &= tokens != bos
    if "end" in kinds:
        valid &= tokens != eos
    if "end-1" in kinds:
        shifted = np.concatenate([tokens[..., 1:], np.zeros_like(tokens[..., :1])], axis=-1)
        valid &= shifted != eos
    if "text" in kinds:
        valid &= (tokens == bos) | (tokens == eos) | (tokens == 0)
    return ~valid if neg else valid


def trace_token_points(tokens: np.ndarray, utterances, centres: np.ndarray, boxes: np.ndarray, hw,
                       bos: int = tokenizer.BOS_ID, eos: int = tokenizer.EOS_ID, pad: int = tokenizer.PAD_ID):
    """Per-token 2-point targets from per-utterance trace boxes: port of official io/ops.py
    DecodeLocalizedNarrativesAnnotations (box_points_per_side=0 -> the 2 points are the box corners).

    1. utterance position = cumsum(valid)/sum(valid), valid = non-empty and centre > 1e-5 (else -1);
    2. token position = the valid tokens (not pad/bos/eos) spread uniformly over [first, last] utterance position;
    3. each token takes the nearest utterance (first on ties); its trace box, zeroed for invalid tokens, clipped to
       [0, 1], is scaled to pixels with round-half-even; points = [[x0, y0], [x1, y1]].
    tokens (L,), centres (U, 2), boxes (U, 4) normalised; hw = (h, w) image size.  Returns (L, 2, 2) float32.
    """
    inf = float(2 ** 16 - 1)
    valid_utt = np.array([len(u.strip()) > 0 for u in utterances]) & np.all(centres > 1e-5, axis=-1)
    if not valid_utt.any():
        raise ValueError("no valid utterance (the official code would produce NaN positions)")
    utt_pos = np.cumsum(valid_utt.astype(np.int64)) / valid_utt.sum()
    utt_pos = np.where(valid_utt, utt_pos, -1.0)
    start = np.min(np.where(utt_pos > 0, utt_pos, inf))
    end = np.max(np.where(utt_pos > 0, utt_pos, -inf))
    valid_tok = (tokens != pad) & (tokens != bos) & (tokens != eos)
    if not valid_tok.any():
        raise ValueError("caption has no word tokens")
    tok_pos = np.cumsum(valid_tok.astype(np.int64)) / valid_tok.sum()
    tok_pos = start + tok_pos * (end - start)
    tok2utt = np.argmin((tok_pos[:, None] - utt_pos[None, :]) ** 2, axis=-1)
    box = boxes.astype(np.float32)[tok2utt] * valid_tok[:, None].astype(np.float32)
    box = np.clip(box, 0.0, 1.0)
    h, w = hw
    box = np.round(box * np.array([w, h, w, h], dtype=np.float32))
    return box.reshape(-1, 2, 2).astype(np.float32)


def _pad_rows(rows, length, what):
    out = np.zeros((len(rows), length), dtype=np.int32)
    for i, r in enumerate(rows):
        if len(r) > length:
            raise ValueError(f"{what}: {len(r)} tokens > {length}")
        out[i, :len(r)] = r
    return out


def example(seed: int, task: str, cfg: DataConfig = DataConfig()) -> dict:
    """One image's arrays for `task` (the batch layout above without the leading B)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}, expected one of {TASKS}")
    rng = np.random.default_rng([seed, TASKS.index(task), 12345])
    lay = scenes.make_layout(seed)
    S = cfg.image_size
    h, w = resized_hw(lay.height, lay.width, S)
    rend = render(lay, h, w)
    img = np.zeros((S, S, 3), dtype=np.float32)
    img[:h, :w] = rend.image
    pm = np.zeros((S, S), dtype=np.float32)
    pm[:h, :w] = 1
    whole = np.array([0, 0, w, h], dtype=np.float32)
    n = len(lay.objects)
    if task == "trace":
        P, L = 1, cfg.trace_text_len
        text = _pad_rows([tokenizer.encode_caption(lay.narrative)], L, "narrative")
        ctx = _pad_rows([tokenizer.encode_context(scenes.NARRATIVE_PROMPT)], cfg.context_len, "context")
        centres, uboxes = scenes.trace_to_utterance_boxes(lay.trace, lay.utt_times)
        points = trace_token_points(text[0], lay.utterances, centres, uboxes, (h, w))[None]
        prompt = whole[None]
        classes = np.ones((1,), dtype=np.int32)
        gt_boxes = np.zeros((1, 4), dtype=np.float32)
        masks = np.zeros((1, S, S), dtype=bool)
        mask_valid = np.zeros((1,), dtype=bool)
    else:
        P, L = cfg.max_prompts, cfg.text_len
        if n > P:
            raise ValueError(f"scene {seed} has {n} objects > max_prompts {P}")
        order = rng.permutation(n)
        if task == "refer":
            exprs = [lay.objects[k].expressions[int(rng.integers(len(lay.objects[k].expressions)))] for k in order]
            text = _pad_rows([tokenizer.encode_caption(e) for e in exprs] + [[]] * (P - n), L, "expression")
            ctx = _pad_rows([tokenizer.refer_context(e) for e in exprs] + [[]] * (P - n), cfg.context_len, "context")
        else:
            caps = [lay.objects[k].caption for k in order]
            text = _pad_rows([tokenizer.encode_caption(c) for c in caps] + [[]] * (P - n), L, "caption")
            ctx = _pad_rows([tokenizer.encode_context(scenes.REGION_PROMPT)] * n + [[]] * (P - n),
                            cfg.context_len, "context")
        gt_boxes = np.zeros((P, 4), dtype=np.float32)
        gt_boxes[:n] = rend.boxes[order]
        classes = np.zeros((P,), dtype=np.int32)
        classes[:n] = 1
        prompt = np.tile(whole, (P, 1)) if task == "refer" else gt_boxes.copy()
        points = np.broadcast_to(gt_boxes.reshape(P, 1, 2, 2), (P, L, 2, 2)).copy()
        masks = np.zeros((P, S, S), dtype=bool)
        mask_valid = np.zeros((P,), dtype=bool)
        if task == "refer":
            masks[:n, :h, :w] = rend.masks[order]
            mask_valid[:n] = True
    cap, prop, objcap, pt = TASK_FLAGS[task]
    return {"images": img, "padding_mask": pm, "image_hw": np.array([h, w], dtype=np.int32),
            "prompt_boxes": prompt.astype(np.float32), "text_tokens": text, "context_tokens": ctx,
            "gt_classes": classes, "gt_boxes": gt_boxes, "gt_point_coords": points.astype(np.float32),
            "point_valid_mask": token_valid_mask(text, POINT_IGNORE[task], tokenizer.BOS_ID, tokenizer.EOS_ID),
            "gt_masks": masks, "mask_valid": mask_valid,
            "cap_loss_valid_mask": np.int32(cap), "proposal_loss_valid_mask": np.int32(prop),
            "objcap_loss_valid_mask": np.int32(objcap), "point_loss_valid_mask": np.int32(pt)}


def make_batch(task: str, seeds, cfg: DataConfig = DataConfig()) -> dict:
    """Stacks `example(seed, task)` over `seeds` (one task per batch, as the official batch_before_merge)."""
    exs = [example(int(s), task, cfg) for s in seeds]
    batch = {k: np.stack([e[k] for e in exs]) for k in exs[0]}
    batch["task"] = task
    batch["scene_seeds"] = np.asarray(seeds, dtype=np.int64)
    return batch


def batches(seed: int, batch_size: int, cfg: DataConfig = DataConfig(), start_step: int = 0):
    """Endless training stream: each batch draws its task from cfg.task_weights; scene seeds are
    (seed * 7919 + step * batch_size + i) mod TRAIN_SEEDS_END, so a stream restarted at `start_step` continues."""
    names = [t for t, _ in cfg.task_weights]
    p = np.array([wt for _, wt in cfg.task_weights], dtype=np.float64)
    p /= p.sum()
    step = start_step
    while True:
        task = names[int(np.random.default_rng([seed, step, 99]).choice(len(names), p=p))]
        base = seed * 7919 + step * batch_size
        yield make_batch(task, [(base + i) % TRAIN_SEEDS_END for i in range(batch_size)], cfg)
        step += 1


def to_torch(batch: dict, device=None) -> dict:
    """numpy batch -> torch tensors (strings and ints left as they are), on `device` when given."""
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True) if isinstance(v, np.ndarray)
            else v for k, v in batch.items()}
