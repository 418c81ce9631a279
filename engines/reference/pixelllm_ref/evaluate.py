"""Reference-side (PyTorch) evaluation of a trained demo model on FRESH scenes.

Scene seeds: training (train.py) only ever draws seeds < 10**6; evaluation uses seeds 10**9 + i, i = 0..n-1
(`EVAL_SEED_BASE`), so no evaluated scene was seen in training. Every scene goes through the same input pipeline
as training (data.example: resize longest side to image_size, pad bottom/right) and the metrics are in pixels of
that resized image. Decoding is greedy (the demo config's decode_method).

Metrics (the native evaluation computes the same definitions):
  referAcc50          share of objects whose referring box (teacher-forced expression after "where is ...", box
                      from the 2 points at the token before EOS) has IoU >= 0.5 with the ground-truth box.
  maskIoU             mean over objects of IoU(mask, gt visible mask); mask = the SAM decoder's low-res logits for
                      the predicted referring box, resized bilinearly (jax port) to the padded input, cropped to
                      the valid image, > 0.
  pointInObject       image captioning (whole-image prompt, context "a long image caption:"): of the generated
                      words that name an object (the article-less mention words [size] colour shape), the share
                      whose point (centre of the token's 2 predicted corners) lies inside that object's full
                      (unoccluded) mask, ring holes filled. The named object: the scene objects with that colour
                      and shape (and size, if said); a mention matching no object counts as a miss for all its words.
  regionCaptionExact  share of objects whose caption, prompted with the ground-truth box (context "an object of"),
                      equals the ground-truth region caption token for token.
  denseAP50           dense captioning (proposal_head.dense_caption): detections sorted by score; a detection is a
                      true positive when an unmatched ground truth has IoU >= 0.5 with it AND the same caption (exact
                      match replaces the METEOR threshold of the official VG densecap metric); the highest-IoU such
                      ground truth is matched. AP = all-point interpolated area under precision/recall, all images
                      pooled. proposalAP50: the same without the caption condition.

Usage (from engines/reference):  .venv/bin/python -m pixelllm_ref.evaluate ../demo --scenes 200 [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import data, proposal_head, scenes, tokenizer
from .jax_resize import resize_torch
from .scene_render import render

EVAL_SEED_BASE = 10 ** 9


def load_model(path: str | Path):
    """A model directory (config.json + model.safetensors), a train.py checkpoint (ckpt.pt) or a shard directory
    (`train.load_weights`), in eval mode without the training-only modules."""
    from .train import build_model, inference_state, load_weights

    state, cfg, _ = load_weights(Path(path))
    model = build_model(cfg)
    model.load_state_dict(inference_state(state), strict=True)
    return model.eval()


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def average_precision(scores, tp, num_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+) of detections with scores and TP flags, over num_gt ground truths."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(tp, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec = ctp / num_gt
    prec = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_detections(boxes, captions, gt_boxes, gt_captions, need_caption: bool, thr: float = 0.5) -> list[bool]:
    """Greedy matching of score-sorted detections (module doc)."""
    if len(boxes) == 0:
        return []
    iou = box_iou_np(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(gt_boxes, np.float64).reshape(-1, 4))
    used = np.zeros(len(gt_boxes), dtype=bool)
    tps = []
    for i in range(len(boxes)):
        ok = (iou[i] >= thr) & ~used
        if need_caption:
            ok &= np.array([captions[i] == g for g in gt_captions], dtype=bool)
        if ok.any():
            j = int(np.argmax(np.where(ok, iou[i], -1.0)))
            used[j] = True
        tps.append(bool(ok.any()))
    return tps


def _text(tokens) -> str:
    return tokenizer.decode([int(t) for t in tokens if int(t) > 0])


def _filled_full_masks(lay, h: int, w: int) -> np.ndarray:
    objs = [dataclasses.replace(o, shape="circle" if o.shape == "ring" else o.shape) for o in lay.objects]
    return render(dataclasses.replace(lay, objects=objs), h, w, masks_only=True).full_masks


def mention_hits(tokens: list[int], points: np.ndarray, lay, full: np.ndarray) -> tuple[int, int]:
    """pointInObject counts of one generated caption: (words naming an object, of them inside the object)."""
    vocab = tokenizer.vocab()
    inv = {i: w for w, i in vocab.items()}
    words = [inv.get(t, "") for t in tokens]
    named = hits = 0
    for i, wd in enumerate(words):
        if wd not in scenes.SHAPES or i == 0 or words[i - 1] not in scenes.COLOURS:
            continue
        span = [i - 1, i]
        size = words[i - 2] if i >= 2 and words[i - 2] in scenes.SIZES else None
        if size is not None:
            span.insert(0, i - 2)
        objs = [k for k, o in enumerate(lay.objects) if o.shape == wd and o.colour == words[i - 1]
                and (size is None or o.size == size)]
        for pos in span:
            named += 1
            x, y = points[pos].mean(axis=0)
            xi, yi = int(np.floor(x)), int(np.floor(y))
            inside = 0 <= yi < full.shape[1] and 0 <= xi < full.shape[2] and any(full[k, yi, xi] for k in objs)
            hits += int(inside)
    return named, hits


@torch.no_grad()
def evaluate(model, num_scenes: int = 100, seed_base: int = EVAL_SEED_BASE, dense: bool = True,
             caption: bool = True, log=None) -> dict:
    cfg = model.cfg
    dc = data.DataConfig.for_model(cfg)
    eos = int(cfg["eos_token_id"])
    trace_ctx = torch.tensor(tokenizer.encode_context(scenes.NARRATIVE_PROMPT))
    region_ctx = torch.tensor(tokenizer.encode_context(scenes.REGION_PROMPT))
    refer_hit, mask_ious, cap_exact = [], [], []
    named = hits = 0
    dense_rows, prop_rows, num_gt = [], [], 0
    t0 = time.time()
    for i in range(num_scenes):
        seed = seed_base + i
        ex = data.to_torch(data.make_batch("refer", [seed], dc))
        n = int(ex["gt_classes"][0].sum())
        enc = model.encode(ex["images"], ex["padding_mask"])
        h, w = (int(v) for v in ex["image_hw"][0])
        # referring + masks
        vis = model.visual_tokens(enc, None)
        vis_n = vis.expand(1, n, *vis.shape[2:])
        out = model.generate(enc, vis_n, ex["context_tokens"][:, :n], text_tokens=ex["text_tokens"][:, :n])
        boxes = out["detection_boxes"][0].numpy()
        gt = ex["gt_boxes"][0, :n].numpy()
        refer_hit += list(np.diag(box_iou_np(boxes, gt)) >= 0.5)
        masks, _ = model.predict_masks(enc, out["detection_boxes"], vis_n, out["text_feats"])
        s = ex["images"].shape[1]
        up = resize_torch(masks, (1, n, s, s), "bilinear")[0, :, :h, :w] > 0
        gm = ex["gt_masks"][0, :n, :h, :w]
        inter = (up & gm).sum(dim=(1, 2)).float()
        union = (up | gm).sum(dim=(1, 2)).float()
        mask_ious += list((inter / union.clamp(min=1)).numpy())
        # region captions from gt boxes
        lay = scenes.make_layout(seed)
        gt_caps = [lay.objects[k].caption for k in range(n)]
        gt_all = render(lay, h, w, masks_only=True).boxes
        visg = model.visual_tokens(enc, torch.from_numpy(gt_all)[None].float())
        gen = model.generate(enc, visg, region_ctx[None, None].expand(1, n, -1))
        caps = [_text(t) for t in gen["text_tokens"][0]]
        cap_exact += [c == g for c, g in zip(caps, gt_caps)]
        # image caption points
        if caption:
            g = model.generate(enc, vis, trace_ctx[None, None])
            toks = [int(t) for t in g["text_tokens"][0, 0]]
            full = _filled_full_masks(lay, h, w)
            a, b = mention_hits(toks, g["point_coords"][0, 0].numpy(), lay, full)
            named, hits = named + a, hits + b
        # dense captioning
        if dense:
            res = proposal_head.dense_caption(model, model.proposal_head, enc, region_ctx)[0]
            dcaps = [_text(t) for t in res["text_tokens"]]
            db, ds = res["boxes"].numpy(), res["scores"].numpy()
            dense_rows += list(zip(ds, match_detections(db, dcaps, gt_all, gt_caps, True)))
            pb, ps = res["boxes"].numpy(), res["proposal_scores"].numpy()
            order = np.argsort(-ps, kind="stable")
            prop_rows += list(zip(ps[order], match_detections(pb[order], None, gt_all, gt_caps, False)))
            num_gt += n
        if log is not None and (i + 1) % 10 == 0:
            log(f"{i + 1}/{num_scenes} scenes, {time.time() - t0:.0f} s")
    del eos
    res = {"scenes": num_scenes, "seeds": [seed_base, seed_base + num_scenes - 1], "objects": len(refer_hit),
           "referAcc50": float(np.mean(refer_hit)), "maskIoU": float(np.mean(mask_ious)),
           "regionCaptionExact": float(np.mean(cap_exact))}
    if caption:
        res["pointInObject"] = hits / max(named, 1)
        res["pointWords"] = named
    if dense:
        res["denseAP50"] = average_precision([r[0] for r in dense_rows], [r[1] for r in dense_rows], num_gt)
        res["proposalAP50"] = average_precision([r[0] for r in prop_rows], [r[1] for r in prop_rows], num_gt)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="evaluate a demo model on fresh scenes (seeds >= 10**9)")
    ap.add_argument("model", help="model directory or train.py checkpoint")
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--no-caption", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.seed_base < EVAL_SEED_BASE:
        raise SystemExit(f"--seed-base must be >= {EVAL_SEED_BASE} (seeds below 10**6 are training scenes)")
    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    res = evaluate(model, a.scenes, a.seed_base, dense=not a.no_dense, caption=not a.no_caption,
                   log=lambda s: print(s, flush=True))
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
