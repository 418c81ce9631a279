"""Joint training of the demo PixelLLM on every task (synthetic shapes world), resumable, deterministic by seed.

Follows the official multi-task recipe (configs/bert/pixel_llm_bert_trace_refseg_densecap_llava.py: sources merged
into one batch, loss masks per task from io/ops.py AddTaskMask; PixelLlmFlaxModel.loss_function):
  trace  (narratives)  text loss + per-token point loss (l1_nonzero, 'begin,end,pad' tokens ignored)
  refer  (refseg)      point loss at the token before EOS (the referring box), no text loss (cap mask 0);
                       SAM mask loss (focal x20 + dice + IoU-head MSE) on the mask decoder prompted with a box
  region (densecap)    text loss of the region caption, prompt = the object box, proposal (CenterNet) loss
AdamW (weight decay 0, as the official), linear warmup + cosine decay, global-norm gradient clipping.
What differs from the official, to learn fast on 2 CPU cores (each choice named in TrainConfig):
  * every image of a step trains EVERY task (one shared backbone pass), instead of one task per source batch;
  * refer rows share the whole-image visual tokens (they are identical: prompt = whole image) and at most
    `refer_rows` / `region_rows` objects per image are used per step; padding columns are trimmed per batch;
  * text and point losses are averaged per task and then summed (the official averages over all tokens of the
    merged batch, which lets 60-token narratives drown out 5-token region captions);
  * region rows also get the point loss at the token before EOS (target = the prompt box; the official densecap
    source has no point loss), a direct signal for the box-prompt path of the prompt adapter;
  * the prompt adapter (SAM two-way transformer + 32 learned tokens) is the bottleneck of a from-scratch model: its
    visual tokens start with a weak box/object signal (the prompt box is linearly decodable from them at init to
    7 px L1, but the prompt-dependent part is ~6% of their spread), and the text/point gradients arriving through
    the decoder first make them prompt-INVARIANT (std across box prompts 0.03 -> 0.003 within ~50 steps at
    3e-4, 1e-4 at 1e-3), after which captions stay at the language prior and referring boxes at the mean box
    (three runs of 360-680 steps at lr 1e-3 / 5e-4 / 3e-4 did exactly that; a frozen adapter, a text-loss ramp and
    lower adapter rates did not prevent it). What works: training-only linear probes on the visual tokens
    (`Probes`: box-prompted rows -> their box and size/colour/shape; whole-image tokens -> a matched set of object
    slots), and for the first `probe_only` steps the adapter learns from the probes ALONE (its tokens are detached
    before the text decoder) while the decoder learns to read them: the box signal appears after ~380 steps
    (std across prompts 0.003 -> 0.09, probe box error 45 -> 16 px). The text losses ramp in over `text_ramp`.
    The probes are not part of the model: export drops them;
  * the mask decoder is prompted with jittered ground-truth boxes early on, and with the model's own (detached)
    referring boxes with a probability that ramps up to `pred_box_prob` (the official always uses its own boxes);
  * randomly initialised model (no SAM/EVA02/BERT pretraining exists offline): position embeddings N(0, 0.02),
    the SAM random-Fourier matrix N(0, 1) and frozen (SAM's PositionEmbeddingRandom is a fixed random buffer).
Scene seeds: training draws seeds < 10**6 (`TRAIN_SEED_LIMIT`); evaluation (evaluate.py) uses seeds >= 10**9.

On a CUDA machine: `--device cuda --workers N` (N data processes) and `--schedule time` (the LR decay follows the
wall budget `--minutes`); `--shards DIR` writes the weights as small files, `--init-from DIR` / `--export` read them.

Warm starts (`--init-from`) from a converged model (session 9, `pixelllm_ref.validate`): a fresh AdamW at a rate far
above the one the model's schedule ended on throws it off (lr 3e-4 at batch 8: every validation loss up after 100
steps; 3e-5: down), and the training-only probes, absent from a model directory, start untrained: `--probe-lr-mult`
gives them their own rate and `--probe-warmup` keeps their gradient off the encoders until they have learnt.

Usage (from engines/reference):
  .venv/bin/python -m pixelllm_ref.train --run runs/demo                                    # start
  .venv/bin/python -m pixelllm_ref.train --run runs/demo --resume                          # continue
  .venv/bin/python -m pixelllm_ref.train --run runs/demo --export ../demo                  # model dir
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import multiprocessing as mp
import os
import queue as queue_lib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import configs, data, losses, proposal_head, scenes, tokenizer
from .scene_render import render
from .model import PixelLLM
from .point_head import boxes_from_points

TRAIN_SEED_LIMIT = 10 ** 6
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.json"


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 4            # images per step; each image trains every task
    steps: int = 3000              # length of the LR schedule (a run may stop earlier at `minutes`)
    minutes: float = 120.0         # wall-clock budget, summed over resumed runs
    lr: float = 3e-4
    min_lr_ratio: float = 0.02
    warmup: int = 100
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    threads: int = 1               # measured: 1 thread ~0.9 s/image, 2 threads 6-10 s/image on the shared 2 cores
    refer_rows: int = 4            # referring rows per image (point loss)
    mask_rows: int = 2             # of which the first `mask_rows` also train the mask decoder
    region_rows: int = 2
    region_point: bool = True      # also supervise the prompt box at the region caption's last word
    box_jitter: float = 0.1        # jitter of gt mask prompts, fraction of the box size
    pred_box_prob: float = 0.5     # final probability of prompting the mask decoder with the predicted box
    pred_box_ramp: tuple = (0.3, 0.7)  # progress interval over which that probability ramps up from 0
    label_smooth: float = 0.1
    text_ramp: tuple = (150, 400)  # text-loss weight ramps 0 -> 1 between these steps (box/point losses first)
    adapter_lr_mult: float = 1.0   # learning-rate multiplier of the prompt adapter
    adapter_freeze: int = 0        # the prompt adapter is not updated before this step
    w_probe: float = 1.0           # training-only probes on the visual tokens (Probes); 0 disables them
    probe_only: int = 600          # before this step the adapter learns from the probes alone (its tokens are
                                   # detached before the text decoder)
    w_text: float = 1.0
    w_point: float = 0.1
    w_mask: float = 1.0
    w_det: float = 1.0
    log_every: int = 10
    workers: int = 1               # data producer processes (0: build batches in the training process); worker k
                                   # makes the batches of steps k, k + workers, ...
    ckpt_minutes: float = 4.0
    cell_grid: int = 0             # set from the config (feature_fusion.output_size) when w_cells > 0
    w_attn: float = 0.0            # attention guidance: head 0 of text-decoder layers >= 1 attends to the cells of
                                   # each supervised token's target box (GIT, dense tokens); 0 disables
    w_cells: float = 0.0           # training-only per-cell probes on DENSE visual tokens (CellProbes); 0 disables
    pos_init: str = "normal"       # "normal": N(0, 0.02) position tables; "sincos": fixed 2-D sin/cos pattern x 0.5
                                   # (an initial value only; the tables are trained) so tokens know where they are
    stage: str = "full"            # "full": every task (step_losses); "vision": the image encoders alone learn each
                                   # object's size / colour / shape from ObjectProbes (no text side; ~6x the images/s);
                                   # "mask": the mask adapter + mask decoder alone learn box -> mask on every object
                                   # (the rest frozen: without mask_encoder, captions, boxes and proposals stay bit
                                   # for bit the same)
    w_objects: float = 0.0         # ObjectProbes on the image features; always on (weight 1) in the vision stage
    probe_lr_mult: float = 1.0     # learning-rate multiplier of the training-only modules: fresh linear probes need a
                                   # normal rate where a warm start runs the model at a low one (warm starts from a
                                   # model directory bring no probes)
    probe_warmup: int = 0          # for this many steps the training-only probes of joint steps (w_cells, w_objects)
                                   # read detached features: probes that start fresh (a warm start from a model
                                   # directory, which has none) learn before their gradient reaches the encoders
    mask_encoder: bool = False     # mask stage: the SAM image encoder learns too, held to the fused features it
                                   # started from (what the text side and the proposal head read) by w_keep
    w_keep: float = 10.0           # weight of that hold: mean squared change of the fused features / their mean square
    device: str = "cpu"            # torch device of the model and the batches ("cuda" on a GPU machine)
    schedule: str = "steps"        # "steps": LR decay and ramps follow step / steps; "time": they follow the wall
                                   # budget (elapsed / minutes), for runs whose speed is not known ahead


# ---- model ---------------------------------------------------------------------------------------------------
def build_model(cfg: dict) -> PixelLLM:
    """PixelLLM (with its proposal head when the config has one)."""
    return PixelLLM(cfg)


TRAINING_ONLY = ("training_probes.", "training_cells.", "training_objects.", "training_teacher_sam.")


def add_training_modules(model: PixelLLM, tc: "TrainConfig") -> None:
    dim = int(model.cfg["prompt_adapter"]["output_dim"])
    if tc.w_probe > 0:
        model.add_module("training_probes", Probes(dim, int(model.cfg["image_size"])))
    if tc.w_cells > 0:
        model.add_module("training_cells", CellProbes(dim))
    if tc.stage == "vision" or tc.w_objects > 0:
        model.add_module("training_objects", ObjectProbes(model.cfg))
    if tc.stage == "mask" and tc.mask_encoder:  # the SAM image encoder as the run started (set after init-from)
        model.add_module("training_teacher_sam", copy.deepcopy(model.sam_image_encoder))


def regrid_free(cfg: dict) -> dict:
    """`cfg` without the fused-grid keys (configs.GRID_KEYS): two configs equal under it hold the same tensors, so a
    warm start may change the grid (configs.with_fused_grid)."""
    out = copy.deepcopy(cfg)
    for sec, key in configs.GRID_KEYS:
        out.get(sec, {}).pop(key, None)
    return out


def inference_state(state_dict: dict) -> dict:
    """The model's tensors without the training-only modules."""
    return {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_ONLY)}


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid, grid, dim) 2-D sine/cosine position pattern (half the channels encode y, half x; MAE-style)."""
    if dim % 4:
        raise ValueError(f"sincos_2d: dim {dim} is not a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(grid, dtype=torch.float64)[:, None] * omega[None]          # (grid, dim/4)
    emb1 = torch.cat([torch.sin(pos), torch.cos(pos)], dim=1)                    # (grid, dim/2)
    y = emb1[:, None, :].expand(grid, grid, dim // 2)
    x = emb1[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat([y, x], dim=-1).float()


def init_weights(model: PixelLLM, seed: int, pos_init: str = "normal") -> None:
    """From-scratch init of the tensors the component constructors leave constant (see module doc)."""
    if pos_init not in ("normal", "sincos"):
        raise ValueError(f"pos_init must be 'normal' or 'sincos', not {pos_init!r}")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in ("sam_image_encoder.pos_embed", "eva02_encoder.pos_embed", "eva02_encoder.cls_token"):
            p = model.get_parameter(name)
            p.copy_(torch.randn(p.shape, generator=g).clamp(-2, 2) * 0.02)
        if pos_init == "sincos":
            sam = model.get_parameter("sam_image_encoder.pos_embed")            # (1, G, G, C)
            sam.copy_(0.5 * sincos_2d(sam.shape[1], sam.shape[3])[None])
            eva = model.get_parameter("eva02_encoder.pos_embed")                # (1, 1 + G*G, C)
            grid = int(round((eva.shape[1] - 1) ** 0.5))
            eva[:, 1:] = 0.5 * sincos_2d(grid, eva.shape[2]).reshape(1, grid * grid, -1)
        gauss = model.prompt_encoder.shared_embedding.positional_embedding
        gauss.copy_(torch.randn(gauss.shape, generator=g))
        gauss.requires_grad_(False)


# ---- data ----------------------------------------------------------------------------------------------------
def step_seeds(tc: TrainConfig, step: int) -> list[int]:
    base = (tc.seed * 7_919_993 + step * tc.batch_size) % TRAIN_SEED_LIMIT
    return [(base + i) % TRAIN_SEED_LIMIT for i in range(tc.batch_size)]


def _pick_rows(valid: np.ndarray, k: int, rng) -> np.ndarray:
    idx = np.flatnonzero(valid)
    idx = rng.permutation(idx)[:k]
    pad = np.flatnonzero(~valid)[: k - len(idx)]
    return np.concatenate([idx, pad]).astype(np.int64)


def _trim(*arrays) -> int:
    """Length of the longest non-padding prefix over all rows of the given (..., L) token arrays."""
    n = 1
    for a in arrays:
        nz = np.flatnonzero((a != 0).reshape(-1, a.shape[-1]).any(axis=0))
        n = max(n, int(nz[-1]) + 1 if nz.size else 1)
    return n


def make_step_batch(tc: TrainConfig, dc: data.DataConfig, step: int, seeds: list[int] | None = None) -> dict:
    """All tasks for the images of `step` (numpy). Deterministic in (tc.seed, step); `seeds`: these scenes instead
    of the step's training scenes (validation)."""
    seeds = step_seeds(tc, step) if seeds is None else list(seeds)
    tr, rf, rg = (data.make_batch(t, seeds, dc) for t in ("trace", "refer", "region"))
    rng = np.random.default_rng([tc.seed, step, 4242])
    b = len(seeds)
    rr = np.stack([_pick_rows(rf["gt_classes"][i] > 0, tc.refer_rows, rng) for i in range(b)])
    gr = np.stack([_pick_rows(rg["gt_classes"][i] > 0, tc.region_rows, rng) for i in range(b)])
    out = {"images": tr["images"], "padding_mask": tr["padding_mask"], "scene_seeds": tr["scene_seeds"],
           "all_boxes": rg["gt_boxes"], "all_valid": rg["gt_classes"] > 0,
           "all_attrs": caption_attributes(rg["text_tokens"])}
    lt = _trim(tr["text_tokens"])
    lc = _trim(tr["context_tokens"])
    out.update(trace_text=tr["text_tokens"][..., :lt], trace_ctx=tr["context_tokens"][..., :lc],
               trace_points=tr["gt_point_coords"][:, :, :lt], trace_pv=tr["point_valid_mask"][..., :lt])
    out.update(_refer_rows(rf, rr))
    text, ctx = _take_rows(rg["text_tokens"], gr), _take_rows(rg["context_tokens"], gr)
    lt, lc = _trim(text), _trim(ctx)
    out.update(region_text=text[..., :lt], region_ctx=ctx[..., :lc], region_boxes=_take_rows(rg["gt_boxes"], gr),
               region_valid=_take_rows(rg["gt_classes"], gr) > 0, region_pv=_take_rows(rg["point_valid_mask"], gr)[..., :lt],
               region_attrs=_take_rows(out["all_attrs"], gr))
    if tc.w_objects > 0:
        out.update(object_targets(rf["gt_masks"], rf["gt_boxes"], rf["gt_classes"] > 0, rg["gt_boxes"],
                                  out["all_attrs"], out["all_valid"]))
    if tc.w_cells > 0:
        grid = int(tc.cell_grid)
        out.update(cell_targets(rf["gt_masks"], rf["gt_boxes"], rf["gt_classes"] > 0, rg["gt_boxes"],
                                out["all_attrs"], out["all_valid"], grid))
        out["region_cells"] = box_cell_coverage(out["region_boxes"], dc.image_size, grid)
    return out


def _take_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a (B, P, ...) -> (B, K, ...): the rows idx (B, K) of each image."""
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def _refer_rows(rf: dict, rr: np.ndarray) -> dict:
    """The refer batch's rows rr (B, K) as the refer_* entries of a step batch, token columns trimmed."""
    text, ctx = _take_rows(rf["text_tokens"], rr), _take_rows(rf["context_tokens"], rr)
    lt, lc = _trim(text), _trim(ctx)
    return {"refer_text": text[..., :lt], "refer_ctx": ctx[..., :lc], "refer_boxes": _take_rows(rf["gt_boxes"], rr),
            "refer_valid": _take_rows(rf["gt_classes"], rr) > 0,
            "refer_pv": _take_rows(rf["point_valid_mask"], rr)[..., :lt], "refer_masks": _take_rows(rf["gt_masks"], rr)}


def make_mask_batch(tc: TrainConfig, dc: data.DataConfig, step: int) -> dict:
    """The mask stage's rows: the refer task's first `mask_rows` objects of each image (expression, box, mask)."""
    seeds = step_seeds(tc, step)
    rf = data.make_batch("refer", seeds, dc)
    rng = np.random.default_rng([tc.seed, step, 4243])
    rr = np.stack([_pick_rows(rf["gt_classes"][i] > 0, tc.mask_rows, rng) for i in range(len(seeds))])
    return {"images": rf["images"], "padding_mask": rf["padding_mask"], **_refer_rows(rf, rr)}


def make_vision_batch(tc: TrainConfig, dc: data.DataConfig, step: int) -> dict:
    """The vision stage's images (padded like data.example) with each object's visible mask and size / colour /
    shape indices (ATTRS order), up to dc.max_prompts objects per image."""
    seeds = step_seeds(tc, step)
    s, p = dc.image_size, dc.max_prompts
    b = len(seeds)
    out = {"images": np.zeros((b, s, s, 3), np.float32), "padding_mask": np.zeros((b, s, s), np.float32),
           "object_masks": np.zeros((b, p, s, s), bool), "object_attrs": np.full((b, p, 3), -1, np.int64),
           "object_valid": np.zeros((b, p), bool)}
    for i, seed in enumerate(seeds):
        lay = scenes.make_layout(seed)
        h, w = data.resized_hw(lay.height, lay.width, s)
        rend = render(lay, h, w)
        out["images"][i, :h, :w] = rend.image
        out["padding_mask"][i, :h, :w] = 1
        for k, o in enumerate(lay.objects[:p]):
            out["object_masks"][i, k, :h, :w] = rend.masks[k]
            out["object_attrs"][i, k] = [a.index(getattr(o, n)) for a, n in zip(ATTRS, ("size", "colour", "shape"))]
            out["object_valid"][i, k] = bool(rend.masks[k].any())
    return out


def _cell_pool(a: np.ndarray, grid: int) -> np.ndarray:
    """(..., S, S) -> (..., grid*grid) mean over each cell (S divisible by grid)."""
    s = a.shape[-1]
    c = s // grid
    return a.reshape(a.shape[:-2] + (grid, c, grid, c)).mean(axis=(-3, -1)).reshape(a.shape[:-2] + (grid * grid,))


def cell_targets(masks, boxes, valid, all_boxes, all_attrs, all_valid, grid: int) -> dict:
    """Per-cell soft targets of the whole-image dense tokens: the share of each cell covered by each size / colour /
    shape (last class = background). masks (B,P,S,S) visible-part masks of the refer rows (one per object),
    matched to the attribute rows by box."""
    b = masks.shape[0]
    n = grid * grid
    cov = _cell_pool(masks.astype(np.float32), grid)                          # (B,P,N)
    out = {k: np.zeros((b, n, len(a) + 1), np.float32) for k, a in zip(("cell_size", "cell_colour", "cell_shape"),
                                                                         ATTRS)}
    for i in range(b):
        for p in np.flatnonzero(valid[i]):
            hit = [j for j in np.flatnonzero(all_valid[i]) if np.allclose(all_boxes[i, j], boxes[i, p])]
            if not hit:
                continue
            attrs = all_attrs[i, hit[0]]
            for k, key in enumerate(("cell_size", "cell_colour", "cell_shape")):
                if attrs[k] >= 0:
                    out[key][i, :, attrs[k]] += cov[i, p]
    for key in out:
        out[key][..., -1] = np.clip(1.0 - out[key][..., :-1].sum(-1), 0.0, 1.0)
    return out


def object_targets(masks, boxes, valid, all_boxes, all_attrs, all_valid) -> dict:
    """The refer rows' visible masks (one per object) with the size / colour / shape indices of the region row with
    the same box (make_vision_batch's layout)."""
    attrs = np.full(masks.shape[:2] + (3,), -1, np.int64)
    for i in range(masks.shape[0]):
        for p in np.flatnonzero(valid[i]):
            hit = [j for j in np.flatnonzero(all_valid[i]) if np.allclose(all_boxes[i, j], boxes[i, p])]
            if hit:
                attrs[i, p] = all_attrs[i, hit[0]]
    return {"object_masks": masks, "object_attrs": attrs,
            "object_valid": valid & (attrs >= 0).all(-1) & masks.any(axis=(-2, -1))}


def box_cell_coverage(boxes: np.ndarray, size: int, grid: int) -> np.ndarray:
    """(..., 4) pixel boxes -> (..., grid*grid) share of each cell inside the box."""
    c = size / grid
    lo = np.arange(grid, dtype=np.float32) * c
    def overlap(a0, a1):  # (...) -> (..., grid)
        return np.clip(np.minimum(a1[..., None], lo + c) - np.maximum(a0[..., None], lo), 0.0, c) / c
    ox, oy = overlap(boxes[..., 0], boxes[..., 2]), overlap(boxes[..., 1], boxes[..., 3])
    return (oy[..., :, None] * ox[..., None, :]).reshape(boxes.shape[:-1] + (grid * grid,)).astype(np.float32)


def _data_worker(queue, tc_dict: dict, dc_dict: dict, start: int, stop: int, stride: int = 1,
                 parent: int | None = None) -> None:
    """Producer process. data.example renders the same scene once per task; the layout (the costly part) is
    memoised here by patching scenes.make_layout in THIS process only. `parent`: the trainer's pid, passed in: a
    worker that reads os.getppid() only after its (slow) start may find the trainer already dead and itself
    adopted, and then never notices (a worker left running forever, seen in the test that kills a trainer)."""
    scenes.make_layout = functools.lru_cache(maxsize=64)(scenes.make_layout)
    tc, dc = TrainConfig(**tc_dict), data.DataConfig(**dc_dict)
    parent = os.getppid() if parent is None else parent
    make = STAGES[tc.stage][0]
    for step in range(start, stop, stride):
        item = (step, make(tc, dc, step))
        while True:
            try:
                queue.put(item, timeout=5)
                break
            except queue_lib.Full:
                if os.getppid() != parent:  # the trainer died without closing us
                    queue.cancel_join_thread()  # else exit waits forever to flush the batches nobody will read
                    return


class Prefetcher:
    """Batches of steps [start, stop) from tc.workers spawned worker processes (worker k makes steps start + k,
    start + k + workers, ...; each keeps 2 batches ahead), or made in-process when tc.workers == 0."""

    def __init__(self, tc: TrainConfig, dc: data.DataConfig, start: int, stop: int):
        self.tc, self.dc, self.procs, self.queues = tc, dc, [], []
        if tc.workers < 0:
            raise ValueError(f"TrainConfig.workers must be >= 0, got {tc.workers}")
        ctx = mp.get_context("spawn")
        for k in range(tc.workers):
            q = ctx.Queue(maxsize=2)
            p = ctx.Process(target=_data_worker, daemon=True,
                            args=(q, dataclasses.asdict(tc), dataclasses.asdict(dc), start + k, stop, tc.workers,
                                  os.getpid()))
            p.start()
            self.queues.append(q)
            self.procs.append(p)
        self.start = start

    def get(self, step: int) -> dict:
        if not self.procs:
            return STAGES[self.tc.stage][0](self.tc, self.dc, step)
        k = (step - self.start) % len(self.procs)
        deadline = time.time() + 600
        while True:
            try:
                got, batch = self.queues[k].get(timeout=2)
                break
            except queue_lib.Empty:
                if not self.procs[k].is_alive():
                    raise RuntimeError(f"data worker {k} died (exit code {self.procs[k].exitcode}) before step {step}")
                if time.time() > deadline:
                    raise TimeoutError(f"data worker {k}: no batch for step {step} in 600 s")
        if got != step:
            raise RuntimeError(f"data worker {k} out of order: wanted step {step}, got {got}")
        return batch

    def close(self):
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=10)


# ---- training-only probes ----------------------------------------------------------------------------------
ATTRS = (tuple(scenes.SIZES), tuple(scenes.COLOURS), scenes.SHAPES)  # caption order: "a <size> <colour> <shape>"


def caption_attributes(tokens: np.ndarray) -> np.ndarray:
    """(..., L) region-caption tokens [bos] a size colour shape [eos] -> (..., 3) size/colour/shape indices
    (-1 for padding rows)."""
    v = tokenizer.vocab()
    out = np.full(tokens.shape[:-1] + (3,), -1, dtype=np.int64)
    for k, names in enumerate(ATTRS):
        lut = {v[n]: i for i, n in enumerate(names)}
        col = tokens[..., 2 + k]
        out[..., k] = np.vectorize(lambda t: lut.get(int(t), -1))(col) if col.size else -1
    return out


class Probes(nn.Module):
    """Auxiliary heads used only while training (never exported): linear read-outs of the prompt adapter's
    visual tokens. `region`: mean token of a box-prompted row -> that box + its size/colour/shape; `slots`: each of
    the whole-image tokens -> objectness, box, attributes, matched one-to-one to the objects (greedy by box L1).
    Without them the randomly initialised adapter loses the prompt/object information within the first steps
    (see the module doc); with them it is pushed to carry exactly what the decoder needs."""

    def __init__(self, dim: int, image_size: int):
        super().__init__()
        self.image_size = float(image_size)
        n = sum(len(a) for a in ATTRS)
        self.region = nn.Linear(dim, 4 + n)
        self.slots = nn.Linear(dim, 1 + 4 + n)

    def _split(self, out):
        box = (out[..., :4] + 0.5) * self.image_size
        logits, i = [], 4
        for a in ATTRS:
            logits.append(out[..., i:i + len(a)])
            i += len(a)
        return box, logits

    @staticmethod
    def _attr_loss(logits, attrs):
        return sum(F.cross_entropy(lg, attrs[:, k]) for k, lg in enumerate(logits)) / len(logits)

    def region_loss(self, vis, boxes, attrs, valid):
        box, logits = self._split(self.region(vis.mean(2)[valid]))
        l1 = (box - boxes[valid]).abs().mean()
        return l1, self._attr_loss(logits, attrs[valid])

    def slot_loss(self, vis, boxes, attrs, valid):
        """vis (B,N,D) whole-image tokens; boxes (B,P,4), attrs (B,P,3), valid (B,P)."""
        out = self.slots(vis)
        obj, (box, logits) = out[..., 0], self._split(out[..., 1:])
        target = torch.zeros_like(obj)
        sel_b, sel_s, sel_o = [], [], []
        for b in range(vis.shape[0]):
            objs = torch.nonzero(valid[b]).flatten().tolist()
            cost = (box[b].detach()[:, None] - boxes[b, objs][None]).abs().sum(-1)  # (N, n)
            for _ in range(len(objs)):
                k = int(torch.argmin(cost))
                s, o = divmod(k, cost.shape[1])
                sel_b.append(b), sel_s.append(s), sel_o.append(objs[o])
                cost[s, :] = float("inf")
                cost[:, o] = float("inf")
        target[sel_b, sel_s] = 1.0
        l_obj = F.binary_cross_entropy_with_logits(obj, target)
        l1 = (box[sel_b, sel_s] - boxes[sel_b, sel_o]).abs().mean()
        l_attr = self._attr_loss([lg[sel_b, sel_s] for lg in logits], attrs[sel_b, sel_o])
        return l_obj, l1, l_attr


def box_cells_torch(boxes: torch.Tensor, size: float, grid: int) -> torch.Tensor:
    """box_cell_coverage for target boxes held as a torch tensor (no gradient flows through targets)."""
    cov = box_cell_coverage(boxes.detach().cpu().numpy().astype(np.float32), size, grid)
    return torch.from_numpy(cov).to(device=boxes.device, dtype=boxes.dtype)


def attention_guidance(probs: list, n_visual: int, boxes: torch.Tensor, valid: torch.Tensor, size: float) -> torch.Tensor:
    """Cross-entropy between the target-box cells (normalised) and head 0's attention over the visual keys, for the
    text rows of layers >= 1. probs: per layer (N,H,S,S); boxes (N,L,4) px; valid (N,L) bool."""
    grid = int(round(n_visual ** 0.5))
    t = box_cells_torch(boxes, size, grid)
    mass = t.sum(-1, keepdim=True)
    ok = valid & (mass[..., 0] > 1e-6)
    if not bool(ok.any()):
        return boxes.sum() * 0
    t = t / mass.clamp(min=1e-6)
    n_text = boxes.shape[1]
    loss = 0.0
    layers = probs[1:] if len(probs) > 1 else probs
    for p in layers:
        a = p[:, 0, -n_text:, :n_visual]                                      # (N,L,Nv)
        loss = loss + (-(t * torch.log(a + 1e-6)).sum(-1))[ok].mean()
    return loss / len(layers)


class CellProbes(nn.Module):
    """Training-only linear read-outs of DENSE visual tokens (prompt_fuse_fn "dense"; never exported): each
    whole-image token -> the share of its cell covered by each size / colour / shape and the cell's own position;
    each box-prompted token -> the share of its cell inside the prompt box. They give the encoders and the prompt
    adapter a dense signal from the first step (the text/point losses alone leave the decoder at its language prior
    for thousands of steps on 2 CPU cores), and keep the prompted tokens prompt-dependent."""

    def __init__(self, dim: int):
        super().__init__()
        self.whole = nn.Linear(dim, sum(len(a) + 1 for a in ATTRS) + 2)
        self.region = nn.Linear(dim, 1)

    def losses(self, vis_whole, vis_region, batch) -> dict:
        """vis_whole (B,N,D), vis_region (B,P,N,D)."""
        out = self.whole(vis_whole)
        n = vis_whole.shape[1]
        grid = int(round(n ** 0.5))
        m, i = {}, 0
        for key, a in zip(("cell_size", "cell_colour", "cell_shape"), ATTRS):
            k = len(a) + 1
            t = batch[key].float()
            m[key] = -(t * F.log_softmax(out[..., i:i + k], dim=-1)).sum(-1).mean()
            i += k
        centre = (torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1)
                  .reshape(n, 2).float() + 0.5) / grid
        m["cell_pos"] = (out[..., i:i + 2] - centre).abs().mean() * 10.0
        valid = batch["region_valid"]
        r = self.region(vis_region)[..., 0]
        m["cell_region"] = (F.binary_cross_entropy_with_logits(r, batch["region_cells"].float(), reduction="none")
                            .mean(-1)[valid].mean()) if bool(valid.any()) else r.sum() * 0
        return m


class ObjectProbes(nn.Module):
    """Training-only read-outs of the IMAGE FEATURES (never exported), the signal of the vision stage: each object's
    visible mask, averaged over the fused feature grid (enc["features"], what the prompt adapter reads), -> its size /
    colour / shape (linear); and every patch of each backbone's own grid -> the share of it covered by each shape
    (soft cross-entropy over the object-covered part of each patch). The shape words are the ones the text losses
    alone did not teach the encoders (a linear probe stayed near chance after 9,400 steps)."""

    def __init__(self, cfg: dict):
        super().__init__()
        n = [len(a) for a in ATTRS]
        self.sizes = n
        self.objects = nn.Linear(sum(int(c) for c in cfg["feature_fusion"]["input_channels"]), sum(n))
        self.patch_sam = nn.Linear(int(cfg["sam_image_encoder"]["output_channels"]), n[2])
        self.patch_eva = nn.Linear(int(cfg["eva02_encoder"]["hidden_size"]), n[2])

    @staticmethod
    def _coverage(masks: torch.Tensor, grid: int) -> torch.Tensor:
        """(B,P,S,S) bool -> (B,P,grid,grid) share of each cell covered."""
        b, p, s, _ = masks.shape
        return F.adaptive_avg_pool2d(masks.reshape(b * p, 1, s, s).float(), grid).reshape(b, p, grid, grid)

    @staticmethod
    def total(m: dict) -> torch.Tensor:
        """The sum of the loss terms of losses() (its *_acc entries are accuracies, not losses)."""
        return sum(v for k, v in m.items() if not k.endswith("_acc"))

    def losses(self, enc: dict, batch: dict) -> dict:
        masks, attrs, valid = batch["object_masks"], batch["object_attrs"], batch["object_valid"].bool()
        m = {}
        f = enc["features"]                                                    # (B,g,g,C)
        cov = self._coverage(masks, f.shape[1])
        w = cov / cov.sum((-2, -1), keepdim=True).clamp_min(1e-6)
        logits = self.objects(torch.einsum("bpij,bijc->bpc", w, f))[valid]     # (V, sum(n))
        a = attrs[valid]
        i = 0
        for k, (name, n) in enumerate(zip(("size", "colour", "shape"), self.sizes)):
            lk = logits[:, i:i + n]
            m[f"obj_{name}"] = F.cross_entropy(lk, a[:, k]) if len(a) else lk.sum() * 0
            m[f"obj_{name}_acc"] = (lk.argmax(-1) == a[:, k]).float().mean().detach() if len(a) else torch.zeros(())
            i += n
        shape_1h = F.one_hot(attrs[..., 2].clamp_min(0), self.sizes[2]).float() * valid[..., None]   # (B,P,6)
        for name, feat, head in (("sam", enc["sam"], self.patch_sam), ("eva", enc["eva02"], self.patch_eva)):
            cv = self._coverage(masks, feat.shape[1]) * valid[..., None, None]                          # (B,P,h,w)
            t = torch.einsum("bphw,bps->bhws", cv, shape_1h)                                            # (B,h,w,6)
            covered = t.sum(-1)
            lp = F.log_softmax(head(feat), dim=-1)
            m[f"patch_shape_{name}"] = (-(t * lp).sum(-1).sum() / covered.sum().clamp_min(1e-6))
        return m


def vision_losses(model: PixelLLM, batch: dict, tc: TrainConfig | None = None, step: int = 0,
                  elapsed: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The vision stage: image encoders + ObjectProbes only."""
    enc = model.encode(batch["images"], batch["padding_mask"])
    m = model.training_objects.losses(enc, batch)
    total = ObjectProbes.total(m)
    m["total"] = total
    return total, {k: float(v.detach()) for k, v in m.items()}


# ---- losses --------------------------------------------------------------------------------------------------
def mask_prompt_boxes(gt: torch.Tensor, pred: torch.Tensor, p_pred: float, jitter: float, image_hw: torch.Tensor,
                      rng: np.random.Generator) -> torch.Tensor:
    """(B,R,4) prompts: the predicted box with probability p_pred, else the gt box jittered by +-jitter*size."""
    b, r = gt.shape[:2]
    wh = (gt[..., 2:] - gt[..., :2]).repeat(1, 1, 2)
    noise = torch.from_numpy(rng.uniform(-jitter, jitter, size=(b, r, 4)).astype(np.float32)).to(gt.device)
    jit = gt + noise * wh
    use_pred = torch.from_numpy(rng.random((b, r)) < p_pred).to(gt.device)[..., None]
    boxes = torch.where(use_pred, pred, jit)
    x1 = torch.minimum(boxes[..., 0::2], boxes[..., 0::2].flip(-1))
    x2 = torch.maximum(boxes[..., 0::2], boxes[..., 0::2].flip(-1))
    y1 = torch.minimum(boxes[..., 1::2], boxes[..., 1::2].flip(-1))
    y2 = torch.maximum(boxes[..., 1::2], boxes[..., 1::2].flip(-1))
    wmax, hmax = image_hw[:, 1].view(b, 1), image_hw[:, 0].view(b, 1)
    return torch.stack([x1[..., 0].clamp(min=0), y1[..., 0].clamp(min=0), torch.minimum(x2[..., 0], wmax),
                        torch.minimum(y2[..., 0], hmax)], dim=-1)


def mask_terms(model: PixelLLM, enc: dict, vis: torch.Tensor, tr: dict, batch: dict, k: int, p_pred: float,
               jitter: float, rng: np.random.Generator) -> dict:
    """SAM mask loss of the first k refer rows: the mask decoder prompted with the model's own (detached) referring
    box with probability p_pred, else the jittered gt box; the mask adapter reads the rows' text states `tr`."""
    gt_boxes = batch["refer_boxes"].float()
    pred = boxes_from_points(tr["point_coords"][:, :k], batch["refer_pv"][:, :k]).detach()
    prompt = mask_prompt_boxes(gt_boxes[:, :k], pred, p_pred, jitter, enc["image_hw"], rng)
    pe = model.prompt_encoder
    sparse = model.mask_adapter(pe.embed_boxes(prompt, model.image_size), vis[:, :k], tr["text_feats"][:, :k])
    sam = enc["sam"]
    masks, iou = model.mask_decoder.predict(sam, pe.get_dense_pe(sam.shape[1], sam.shape[2]), sparse,
                                            pe.dense_embedding())
    mk = losses.sam_mask_loss(masks, iou, batch["refer_masks"][:, :k], batch["refer_valid"][:, :k],
                              enc["padding_mask"])
    return {"mask": mk["mask_loss"], "mask_focal": mk["mask_focal_loss"].detach(),
            "mask_dice": mk["mask_dice_loss"].detach(), "mask_iou": mk["mask_iou_pred_loss"].detach()}


MASK_STAGE_MODULES = ("mask_adapter", "mask_decoder")


def mask_losses(model: PixelLLM, batch: dict, tc: TrainConfig, step: int, elapsed: float = 0.0
                ) -> tuple[torch.Tensor, dict]:
    """The mask stage: the frozen model encodes the images and teacher-forces each row's referring expression
    (no gradient); only the mask adapter and the mask decoder (MASK_STAGE_MODULES) learn. With tc.mask_encoder the
    SAM image encoder learns too (the mask loss reaches it through the mask decoder's image embedding), and
    `keep` holds the fused features (its output resized to the fusion grid, next to EVA02's) to what a frozen copy
    of its starting weights gives: the text side and the proposal head read only those, the mask decoder reads the
    full SAM grid."""
    rng = np.random.default_rng([tc.seed, step, 778])
    with torch.set_grad_enabled(tc.mask_encoder):  # the SAM encoder is the only encoder with trainable weights
        enc = model.encode(batch["images"], batch["padding_mask"])
    keep = None
    if tc.mask_encoder:
        with torch.no_grad():
            held = model.feature_fusion(eva02_encoder=enc["eva02"],
                                        sam_image_encoder=model.training_teacher_sam(batch["images"].to(torch.float32),
                                                                                     batch["padding_mask"]))
        keep = (enc["features"] - held).square().mean() / held.square().mean().clamp(min=1e-12)
    with torch.no_grad():
        vis = model.visual_tokens(enc, None)
        b, r = batch["refer_text"].shape[:2]
        vis = vis.expand(b, r, *vis.shape[2:])
        tr = model.teacher_forced(enc, vis, batch["refer_text"], batch["refer_ctx"])
    m = mask_terms(model, enc, vis, tr, batch, r, pred_box_prob(tc, step, elapsed), tc.box_jitter, rng)
    total = tc.w_mask * m["mask"]
    if keep is not None:
        m["keep"] = keep
        total = total + tc.w_keep * keep
    m["total"] = total
    return total, {k: float(v.detach()) for k, v in m.items()}


def freeze_for_stage(model: PixelLLM, tc: TrainConfig) -> None:
    """The mask stage trains MASK_STAGE_MODULES only (+ the SAM image encoder with tc.mask_encoder); set before the
    optimizer is made, on fresh and resumed runs."""
    if tc.stage == "mask":
        train_ = set(MASK_STAGE_MODULES) | ({"sam_image_encoder"} if tc.mask_encoder else set())
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".")[0] in train_)


def text_weight(tc: TrainConfig, step: int) -> float:
    a, b = tc.text_ramp
    return float(np.clip((step - a) / max(b - a, 1e-9), 0.0, 1.0)) if b > 0 else 1.0


def progress(tc: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """How far the run is, 0..1: step / steps, or with tc.schedule "time" the wall budget spent (seconds)."""
    if tc.schedule == "time":
        return min(1.0, elapsed / max(tc.minutes * 60, 1e-9))
    return min(1.0, step / max(tc.steps, 1))


def pred_box_prob(tc: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    lo, hi = tc.pred_box_ramp
    prog = progress(tc, step, elapsed)
    return tc.pred_box_prob * float(np.clip((prog - lo) / max(hi - lo, 1e-9), 0.0, 1.0))


def step_losses(model: PixelLLM, batch: dict, tc: TrainConfig, step: int, elapsed: float = 0.0
                ) -> tuple[torch.Tensor, dict]:
    """Every task's loss on one step's images (torch batch from `make_step_batch`); `elapsed`: seconds trained
    (the schedule's clock when tc.schedule is "time")."""
    cfg = model.cfg
    eos, vocab = int(cfg["eos_token_id"]), int(cfg["vocab_size"])
    rng = np.random.default_rng([tc.seed, step, 777])
    enc = model.encode(batch["images"], batch["padding_mask"])
    vis_whole_a = model.visual_tokens(enc, None)  # (B,1,N,D)
    cut = (lambda t: t.detach()) if step < tc.probe_only else (lambda t: t)  # noqa: E731
    vis_whole = cut(vis_whole_a)
    m = {}
    # trace: narrative text + per-token points
    guide = tc.w_attn > 0 and model.cfg["text_decoder"] == "git_decoder"
    size = float(model.cfg["image_size"])
    attn_terms = []

    def forced(vis, text, ctx, boxes, valid):
        """teacher_forced + (when guiding) the attention-guidance term of its rows; boxes (B,P,L,4), valid (B,P,L)."""
        dec = model.text
        dec.attention_capture = [] if guide else None
        try:
            out = model.teacher_forced(enc, vis, text, ctx)
            if guide:
                n = boxes.shape[0] * boxes.shape[1]
                attn_terms.append(attention_guidance(dec.attention_capture, vis.shape[-2],
                                                     boxes.reshape(n, boxes.shape[2], 4).float(),
                                                     valid.reshape(n, -1), size))
        finally:
            dec.attention_capture = None
        return out

    tpts = batch["trace_points"].float()
    tf = forced(vis_whole, batch["trace_text"], batch["trace_ctx"], tpts.reshape(*tpts.shape[:3], 4),
                batch["trace_pv"].bool() & (tpts.abs().sum((-2, -1)) > 0))
    m["trace_text"] = losses.text_loss(tf["text_logits"], batch["trace_text"], None, tc.label_smooth, eos, vocab)
    ones = torch.ones(batch["trace_pv"].shape, dtype=torch.bool)
    m["trace_point"] = losses.point_loss(tf["point_coords"], batch["trace_pv"], batch["trace_points"], ones,
                                         "l1_nonzero")
    # refer: box at the token before EOS, mask from a box prompt
    b, r = batch["refer_text"].shape[:2]
    vis_r = vis_whole.expand(b, r, *vis_whole.shape[2:])
    lr_ = batch["refer_text"].shape[2]
    tr = forced(vis_r, batch["refer_text"], batch["refer_ctx"],
                batch["refer_boxes"].float()[:, :, None].expand(b, r, lr_, 4),
                batch["refer_pv"].bool() & batch["refer_valid"][..., None])
    gt_boxes = batch["refer_boxes"].float()
    m["refer_point"] = losses.point_loss(tr["point_coords"], batch["refer_pv"], gt_boxes.reshape(b, r, 2, 2),
                                         batch["refer_valid"], "l1_nonzero")
    m.update(mask_terms(model, enc, vis_r, tr, batch, min(tc.mask_rows, r), pred_box_prob(tc, step, elapsed),
                        tc.box_jitter, rng))
    # region captions (prompt = object box)
    vis_g_a = model.visual_tokens(enc, batch["region_boxes"].float())
    vis_g = cut(vis_g_a)
    gb = batch["region_boxes"].float()
    tg = forced(vis_g, batch["region_text"], batch["region_ctx"],
                gb[:, :, None].expand(gb.shape[0], gb.shape[1], batch["region_text"].shape[2], 4),
                batch["region_pv"].bool() & batch["region_valid"][..., None])
    m["region_text"] = losses.text_loss(tg["text_logits"], batch["region_text"], batch["region_valid"],
                                        tc.label_smooth, eos, vocab)
    g = batch["region_text"].shape[1]
    m["region_point"] = losses.point_loss(tg["point_coords"], batch["region_pv"],
                                          batch["region_boxes"].float().reshape(b, g, 2, 2), batch["region_valid"],
                                          "l1_nonzero") if tc.region_point else torch.zeros(())
    # proposals
    det = proposal_head.losses(model.proposal_head(enc["features"]), batch["all_boxes"], batch["all_valid"],
                               cfg[proposal_head.NAME]["stride"])
    m["det"] = det["det_loss"]
    m["det_hm"] = (det["proposal_pos_loss"] + det["proposal_neg_loss"]).detach()
    m["det_reg"] = det["proposal_reg_loss"].detach()
    m["vis_prompt_std"] = vis_g.detach().std(dim=1).mean()  # collapse monitor: 0 = prompt ignored
    probe = torch.zeros(())
    if tc.w_probe > 0:
        pr = model.training_probes
        rl1, rattr = pr.region_loss(vis_g_a, batch["region_boxes"].float(), batch["region_attrs"],
                                    batch["region_valid"])
        sobj, sl1, sattr = pr.slot_loss(vis_whole_a[:, 0], batch["all_boxes"].float(), batch["all_attrs"],
                                        batch["all_valid"])
        m.update(probe_region_box=rl1, probe_region_attr=rattr, probe_slot_obj=sobj, probe_slot_box=sl1,
                 probe_slot_attr=sattr)
        probe = tc.w_point * (rl1 + sl1) + rattr + sattr + sobj
    if attn_terms:
        m["attn_guide"] = sum(attn_terms) / len(attn_terms)
    # fresh probes (probe_warmup): their gradient stops at the features
    hold = (lambda t: t.detach()) if step < tc.probe_warmup else (lambda t: t)  # noqa: E731
    objects = torch.zeros(())
    if tc.w_objects > 0:
        om = model.training_objects.losses({k: hold(v) if torch.is_tensor(v) else v for k, v in enc.items()}, batch)
        m.update(om)
        objects = ObjectProbes.total(om)
    cells = torch.zeros(())
    if tc.w_cells > 0:
        cm = model.training_cells.losses(hold(vis_whole_a[:, 0]), hold(vis_g_a), batch)
        m.update(cm)
        cells = sum(cm.values())
    total = (tc.w_text * text_weight(tc, step) * (m["trace_text"] + m["region_text"])
             + tc.w_point * (m["trace_point"] + m["refer_point"] + m["region_point"])
             + tc.w_mask * m["mask"] + tc.w_det * m["det"] + tc.w_probe * probe + tc.w_cells * cells
             + tc.w_objects * objects
             + tc.w_attn * m.get("attn_guide", torch.zeros(())))
    m["total"] = total
    return total, {k: float(v.detach()) for k, v in m.items()}


# each stage: (batch maker (tc, dc, step) -> numpy batch, losses (model, batch, tc, step, elapsed) -> total, metrics)
STAGES = {"full": (make_step_batch, step_losses), "vision": (make_vision_batch, vision_losses),
          "mask": (make_mask_batch, mask_losses)}


# ---- schedule / checkpoints ----------------------------------------------------------------------------------
def lr_at(tc: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Linear warmup over tc.warmup steps, then cosine decay to min_lr_ratio over the rest of the run (steps, or
    the wall budget with tc.schedule "time")."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    if tc.schedule == "time":
        prog = progress(tc, step, elapsed)
    else:
        prog = min(1.0, (step - tc.warmup) / max(tc.steps - tc.warmup, 1))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))


def make_optimizer(model: PixelLLM, tc: TrainConfig) -> torch.optim.Optimizer:
    adapter = [p for p in model.prompt_adapter.parameters() if p.requires_grad]
    ids = {id(p) for p in adapter}
    # a third group only when its rate differs, so that checkpoints of two-group runs still resume
    probes = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(TRAINING_ONLY)
              and id(p) not in ids] if tc.probe_lr_mult != 1.0 else []
    ids |= {id(p) for p in probes}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr_mult": 1.0}, {"params": adapter, "lr_mult": tc.adapter_lr_mult}]
    if probes:
        groups.append({"params": probes, "lr_mult": tc.probe_lr_mult})
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=tc.weight_decay)


def save_checkpoint(path: Path, model, opt, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), **state}, tmp)
    os.replace(tmp, path)


def export_model_dir(source: Path, out_dir: Path, float16: bool = True) -> Path:
    """config.json (+ `task_prompts`: the contexts each task was trained with) + model.safetensors (float16 storage
    by default: 28 MB instead of 57; the runtimes convert to float32 at load) + tokenizer.json, from a checkpoint
    or a shard directory (`load_weights`). Training-only tensors are dropped."""
    from safetensors.numpy import save_file

    state, model_cfg, step = load_weights(source)
    dtype = np.float16 if float16 else np.float32
    tensors = {k: np.ascontiguousarray(v.detach().cpu().numpy().astype(dtype))
               for k, v in sorted(inference_state(state).items())}
    cfg = dict(model_cfg)
    cfg["task_prompts"] = {"caption": scenes.NARRATIVE_PROMPT, "describe": scenes.REGION_PROMPT,
                           "dense": scenes.REGION_PROMPT}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    save_file(tensors, str(out / "model.safetensors"),
              metadata={"format": "pt", "producer": "pixelllm_ref.train", "step": str(step)})
    (out / "tokenizer.json").write_text(tokenizer.build_tokenizer_json())
    return out


def load_weights(path: Path) -> tuple[dict, dict, int]:
    """(state dict, model config, training step) of a checkpoint (ckpt.pt), a model directory (config.json +
    model.safetensors, e.g. the shipped engines/demo) or a shard directory (`save_weight_shards`). A float16 model
    directory is widened to float32; training-only modules are absent from model directories and start fresh."""
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=False)
        return ck["model"], ck["model_config"], int(ck["step"])
    shards = sorted(path.glob("weights-*.safetensors"))
    if shards:
        with safe_open(str(shards[0]), "pt") as f:
            meta = f.metadata()
        state = {}
        for sh in shards:
            state.update(load_file(str(sh)))
        return state, json.loads(meta["model_config"]), int(meta["step"])
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path}: neither a checkpoint, a model directory nor a shard directory")
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("task_prompts", None)  # added by export_model_dir
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        step = int((f.metadata() or {}).get("step", 0))
    return {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}, cfg, step


def save_weight_shards(ckpt_path: Path, out_dir: Path, max_bytes: int = 15 << 20,
                       inference_only: bool = False) -> list[Path]:
    """The checkpoint's float32 weights (training-only modules included unless `inference_only`, optimizer left
    out) as weights-NN.safetensors files of at most `max_bytes` each (+ the model config and step in their
    metadata): small files that travel where a whole checkpoint does not; `--init-from DIR` and `--export` read
    them."""
    from safetensors.torch import save_file

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if inference_only:
        ck["model"] = inference_state(ck["model"])
    meta = {"model_config": json.dumps(ck["model_config"]), "step": str(ck["step"]),
            "examples": str(ck["examples"]), "train_config": json.dumps(ck["train_config"])}
    groups, cur, size = [], {}, 0
    for k, v in sorted(ck["model"].items()):
        n = v.numel() * v.element_size()
        if n > max_bytes:
            raise ValueError(f"save_weight_shards: tensor {k} ({n} bytes) exceeds the shard size {max_bytes}")
        if cur and size + n > max_bytes:
            groups.append(cur)
            cur, size = {}, 0
        cur[k] = v.detach().cpu().contiguous()
        size += n
    if cur:
        groups.append(cur)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, g in enumerate(groups):
        paths.append(out / f"weights-{i:02d}.safetensors")
        save_file(g, str(paths[-1]), metadata=meta)
    return paths


# ---- main loop -----------------------------------------------------------------------------------------------
def train(run_dir: Path, tc: TrainConfig, resume: bool, cfg_path: Path | None = None, stop_at: int | None = None,
          cfg: dict | None = None, init_from: Path | None = None) -> None:
    """Trains until tc.steps, the wall budget tc.minutes, or step `stop_at` (then a later --resume continues the
    same schedule). `cfg` overrides the architecture file `cfg_path` for a fresh run; with neither, a warm start keeps
    the architecture of its weights (`init_from`) and a run from scratch takes DEMO_CONFIG."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ckpt.pt"
    log = open(run_dir / "train.log", "a", buffering=1)
    torch.set_num_threads(tc.threads)
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        cfg = ck["model_config"]
        # the schedule is the checkpoint's; the budget, the device and the data processes are this command's
        tc = TrainConfig(**{**ck["train_config"], "minutes": tc.minutes, "device": tc.device, "workers": tc.workers})
        tc.pred_box_ramp, tc.text_ramp = tuple(tc.pred_box_ramp), tuple(tc.text_ramp)
        model = build_model(cfg)
        model.prompt_encoder.shared_embedding.positional_embedding.requires_grad_(False)
        add_training_modules(model, tc)
        model.load_state_dict(ck["model"])
        opt_state = ck["optimizer"]
        step, elapsed, examples = ck["step"], ck["elapsed"], ck["examples"]
    else:
        init = load_weights(init_from) if init_from is not None else None
        if cfg is None and cfg_path is None and init is not None:
            cfg = init[1]
        elif cfg is None:
            cfg = json.loads(Path(cfg_path or DEMO_CONFIG).read_text())
        torch.manual_seed(tc.seed)
        model = build_model(cfg)
        init_weights(model, tc.seed, tc.pos_init)
        add_training_modules(model, tc)
        if init is not None:  # warm start: a fresh schedule from another run's weights (same tensors)
            state, init_cfg, _ = init
            if regrid_free(init_cfg) != regrid_free(cfg):
                raise ValueError(f"--init-from {init_from}: its model config differs from this run's (beyond the "
                                 "fused grid)")
            missing, unexpected = model.load_state_dict(state, strict=False)
            bad = [k for k in missing + unexpected if not k.startswith(TRAINING_ONLY)]
            if bad:
                raise ValueError(f"--init-from {init_from}: tensors differ: {bad[:5]}")
        if hasattr(model, "training_teacher_sam"):  # the mask stage's hold: the encoder as this run starts
            model.training_teacher_sam.load_state_dict(model.sam_image_encoder.state_dict())
        opt_state = None
        step, elapsed, examples = 0, 0.0, 0
        log.write(json.dumps({"event": "start", "train_config": dataclasses.asdict(tc),
                              "params": sum(p.numel() for p in model.parameters()),
                              "init_from": None if init_from is None else str(init_from)}) + "\n")
    device = torch.device(tc.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"TrainConfig.device {tc.device!r}: this torch ({torch.__version__}) sees no CUDA device")
    if tc.stage not in STAGES:
        raise ValueError(f"TrainConfig.stage must be one of {sorted(STAGES)}, got {tc.stage!r}")
    freeze_for_stage(model, tc)
    model.to(device)
    opt = make_optimizer(model, tc)
    if opt_state is not None:
        opt.load_state_dict(opt_state)  # torch puts the moments on their parameters' device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.train()
    if tc.schedule not in ("steps", "time"):
        raise ValueError(f"TrainConfig.schedule must be 'steps' or 'time', got {tc.schedule!r}")
    if tc.w_cells > 0:
        if cfg["prompt_adapter"].get("prompt_fuse_fn") != "dense":
            raise ValueError("w_cells > 0 needs prompt_adapter.prompt_fuse_fn 'dense' (per-cell visual tokens)")
        tc.cell_grid = int(cfg["feature_fusion"]["output_size"])
        if int(cfg["image_size"]) % tc.cell_grid:
            raise ValueError("w_cells > 0 needs image_size divisible by feature_fusion.output_size")
    dc = data.DataConfig.for_model(cfg)
    state = lambda: {"step": step, "elapsed": elapsed, "examples": examples,  # noqa: E731
                     "train_config": dataclasses.asdict(tc), "model_config": cfg}
    last = tc.steps if stop_at is None else min(tc.steps, stop_at)
    pre = Prefetcher(tc, dc, step, last)
    t_last_ckpt = time.time()
    acc, n_acc, t0, ex0 = {}, 0, time.time(), examples
    default_device = torch.get_default_device()
    torch.set_default_device(device)  # tensors the losses create follow the model
    try:
        while step < last and elapsed < tc.minutes * 60:
            t_step = time.time()
            batch = data.to_torch(pre.get(step), device)
            for g in opt.param_groups:
                frozen = g is opt.param_groups[1] and step < tc.adapter_freeze
                g["lr"] = 0.0 if frozen else lr_at(tc, step, elapsed) * g["lr_mult"]
            total, metrics = STAGES[tc.stage][1](model, batch, tc, step, elapsed)
            opt.zero_grad(set_to_none=True)
            total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm)
            if not torch.isfinite(gnorm):
                raise FloatingPointError(f"step {step}: non-finite gradient norm")
            opt.step()
            step += 1
            examples += tc.batch_size
            elapsed += time.time() - t_step
            metrics["grad_norm"] = float(gnorm)
            for k, v in metrics.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            if step % tc.log_every == 0 or step == tc.steps:
                dt = time.time() - t0
                rec = {"step": step, "examples": examples, "minutes": round(elapsed / 60, 2),
                       "ex_per_s": round((examples - ex0) / max(dt, 1e-9), 3), "lr": lr_at(tc, step - 1, elapsed),
                       **{k: round(v / n_acc, 4) for k, v in acc.items()}}
                log.write(json.dumps(rec) + "\n")
                acc, n_acc, t0, ex0 = {}, 0, time.time(), examples
            if time.time() - t_last_ckpt > tc.ckpt_minutes * 60:
                save_checkpoint(ckpt, model, opt, state())
                t_last_ckpt = time.time()
    finally:
        pre.close()
        torch.set_default_device(default_device)
    save_checkpoint(ckpt, model, opt, state())
    log.write(json.dumps({"event": "stop", "step": step, "examples": examples, "minutes": round(elapsed / 60, 2)})
              + "\n")
    log.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="run directory (checkpoint + train.log)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", type=Path, help="write a model directory from the run's checkpoint and exit")
    ap.add_argument("--shards", type=Path, help="write the checkpoint's weights as <=15 MiB safetensors shards here "
                    "and exit (--init-from and --export read such a directory)")
    ap.add_argument("--inference-only", action="store_true", help="--shards: leave the training-only modules out")
    ap.add_argument("--config", type=Path, help="the architecture (config JSON) of a fresh run; default: that of "
                    "--init-from's weights, else engines/configs/demo.json")
    ap.add_argument("--stop-at", type=int, help="stop (with a checkpoint) at this step; --resume continues")
    ap.add_argument("--init-from", type=Path, help="fresh run starting from these weights: a checkpoint, a model "
                    "directory (e.g. ../demo) or a shard directory")
    for f in dataclasses.fields(TrainConfig):
        if isinstance(f.default, bool):
            ap.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=f.default)
        elif isinstance(f.default, tuple):
            ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default[0]), nargs=len(f.default),
                            default=f.default)
        elif isinstance(f.default, (int, float, str)):
            ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = ap.parse_args(argv)
    if a.export:  # from the run's checkpoint, or from weight shards in the run directory
        ck = a.run / "ckpt.pt"
        print(export_model_dir(ck if ck.exists() else a.run, a.export))
        return
    if a.shards:
        print("\n".join(str(p) for p in save_weight_shards(a.run / "ckpt.pt", a.shards,
                                                               inference_only=a.inference_only)))
        return
    tc = TrainConfig(**{f.name: tuple(v) if isinstance(v, list) else v
                        for f in dataclasses.fields(TrainConfig) if (v := getattr(a, f.name, None)) is not None})
    train(a.run, tc, a.resume, a.config, a.stop_at, init_from=a.init_from)


if __name__ == "__main__":
    main()
