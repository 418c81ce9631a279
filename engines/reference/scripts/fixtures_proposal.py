"""Fixtures for the native proposal head, its post-processing (NMS) and dense captioning end to end.

Writes `build/fixtures/proposal/<case>/` for
  demo_random   the demo architecture (engines/configs/demo.json) with random weights (train.build_model +
                init_weights, seed 0); the proposal head's heatmap bias is raised to 0 and its convs drawn with a
                larger std so that many cells pass the score threshold (a fresh head scores every cell ~0.01,
                below the 0.05 threshold, and NMS would see nothing);
  demo_ckpt     the training checkpoint engines/reference/runs/demo/ckpt.pt (or $PIXELLLM_CKPT) exported as train.export_model_dir
                does (only when the checkpoint exists and loads; the trainer rewrites it, so this case is skipped
                with a message when it is caught mid-write).
Each case directory holds:
  config.json, model.safetensors, tokenizer.json   the model directory (the demo tokenizer)
  image.rgb        (height, width, 3) uint8 of a demo scene (eval seed 10**9 + 7) rendered at a size the pipeline
                   does not resize (data.resized_hw(h, w, S) == (h, w)): original pixels == model pixels
  proposal.safetensors (float32):
    features (N,G,G,C)           N = 3: the fused features of image.rgb (reference encode), two N(0,1) maps
    heatmap (N,G,G), box_regs (N,G,G,4)   reference ProposalHead.forward
    for case j: post{j}_params (8,) = [feature index, valid_h, valid_w, stride, pre_nms_topk, score_threshold,
                iou_threshold, max_detections]; post{j}_boxes (K,4), post{j}_scores (K,), post{j}_cells (K,)
                (row-major grid index of each kept box) from proposal_head.postprocess with those parameters
  expected.json    dense captioning of image.rgb by the reference (proposal_head.dense_caption, greedy, context
                   "an object of" + eos = tokenizer.encode_context(scenes.REGION_PROMPT)), for
                   runs = [{options: {} | {maxBoxes, scoreThreshold, nmsIou, maxTokens}, items: [{box, score
                   (proposal), tokens (words), caption_score (official mean log-prob), rank_score (sqrt(score *
                   exp(caption_score)), the order)}]}], plus width, height, context_tokens, prompt.

Usage (from engines/reference): .venv/bin/python scripts/fixtures_proposal.py [--out DIR] [--cases a,b]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

from pixelllm_ref import data, proposal_head as ph, scenes, tokenizer, train  # noqa: E402
from pixelllm_ref.convert import write_model_dir  # noqa: E402
from pixelllm_ref.scene_render import render  # noqa: E402

CASES = ("demo_random", "demo_ckpt")
CKPT = Path(os.environ.get("PIXELLLM_CKPT", ROOT / "engines" / "reference" / "runs" / "demo" / "ckpt.pt"))
DEMO_CONFIG = ROOT / "engines" / "configs" / "demo.json"
SCENE_SEED = 10 ** 9 + 7


def random_model():
    cfg = json.loads(DEMO_CONFIG.read_text())
    torch.manual_seed(0)
    model = train.build_model(cfg)
    train.init_weights(model, 0)
    g = torch.Generator().manual_seed(1)
    head = model.proposal_head
    with torch.no_grad():
        for m in list(head.tower) + [head.bbox_pred, head.agn_hm]:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        head.agn_hm.bias.fill_(0.0)
        head.bbox_pred.bias.add_(1.0)
        head.scale.fill_(1.3)
    return cfg, model.eval()


def ckpt_model():
    if not CKPT.is_file():
        return None, None, f"no checkpoint at {CKPT}"
    try:
        ck = torch.load(CKPT, map_location="cpu", weights_only=False)
        cfg = ck["model_config"]
        model = train.build_model(cfg)
        model.load_state_dict(train.inference_state(ck["model"]), strict=True)  # without training-only probes
    except Exception as e:  # the trainer may be rewriting it
        return None, None, f"checkpoint {CKPT} did not load ({type(e).__name__}: {e})"
    if ph.NAME not in cfg:
        return None, None, "the checkpoint's model has no proposal_head"
    return cfg, model.eval(), ""


def scene_image(size: int) -> np.ndarray:
    """A demo scene at (h, w) with resized_hw(h, w, size) == (h, w) (no resampling by the pipeline)."""
    for h in range(int(size * 0.75), size):
        if data.resized_hw(h, size, size) == (h, size):
            return render(scenes.make_layout(SCENE_SEED), h, size).image
    raise RuntimeError("no identity-resize height found")


def cells_of(outputs: dict, image_hw, c: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """postprocess for one image, also returning the kept cells (the same steps; checked against postprocess)."""
    hm = outputs["heatmap"]
    b, h, w = hm.shape
    s = c["stride"]
    scores = torch.sigmoid(hm.reshape(b, -1))[0]
    boxes = ph.ltrb_to_boxes(ph.grid_centres(h, w, s)[None], outputs["box_regs"].reshape(b, -1, 4) * s)[0]
    ih, iw = float(image_hw[0]), float(image_hw[1])
    bx = torch.stack([boxes[:, 0].clamp(0, iw), boxes[:, 1].clamp(0, ih), boxes[:, 2].clamp(0, iw),
                      boxes[:, 3].clamp(0, ih)], dim=-1)
    order = torch.sort(-scores, stable=True).indices[: c["pre_nms_topk"]]
    order = order[scores[order] >= c["score_threshold"]]
    keep = ph.nms(bx[order], scores[order], c["iou_threshold"], c["max_detections"])
    want_b, want_s = ph.postprocess(outputs, torch.tensor([image_hw], dtype=torch.float32), {ph.NAME: c})[0]
    cells = order[keep]
    assert torch.equal(bx[cells], want_b) and torch.equal(scores[cells], want_s), "cells_of != postprocess"
    return want_b.numpy(), want_s.numpy(), cells.numpy().astype(np.float32)


POST_VARIANTS = (  # (feature index, valid (h, w) as fractions of S, overrides)
    (0, None, {}),
    (1, (1.0, 1.0), {}),
    (2, (0.7, 1.0), {}),
    (1, (1.0, 0.6), {"pre_nms_topk": 20, "score_threshold": 0.3, "iou_threshold": 0.3, "max_detections": 5}),
    (2, (1.0, 1.0), {"iou_threshold": 0.8, "max_detections": 40, "pre_nms_topk": 256}),
    (1, (1.0, 1.0), {"score_threshold": 0.9999}),   # nothing passes
)

DENSE_RUNS = ({}, {"maxBoxes": 3, "scoreThreshold": 0.2, "nmsIou": 0.3, "maxTokens": 5})


def dense_run(model, enc, ctx, opts: dict) -> list[dict]:
    head = model.proposal_head
    saved = copy.deepcopy(head.c)
    saved_len = model.max_len
    try:
        head.c = dict(head.c)
        if "maxBoxes" in opts:
            head.c["max_detections"] = opts["maxBoxes"]
        if "scoreThreshold" in opts:
            head.c["score_threshold"] = opts["scoreThreshold"]
        if "nmsIou" in opts:
            head.c["iou_threshold"] = opts["nmsIou"]
        if "maxTokens" in opts:   # native: max_tokens words = a buffer of max_tokens + 2 slots
            model.max_len = min(opts["maxTokens"] + 2, saved_len)
        res = ph.dense_caption(model, head, enc, ctx)[0]
    finally:
        head.c = saved
        model.max_len = saved_len
    eos = int(model.cfg["eos_token_id"])
    items = []
    for k in range(res["boxes"].shape[0]):
        toks = [int(t) for t in res["text_tokens"][k][1:]]
        words = toks[: toks.index(eos)] if eos in toks else toks
        items.append({"box": [float(v) for v in res["boxes"][k]], "score": float(res["proposal_scores"][k]),
                      "tokens": words, "caption_score": float(res["log_probs"][k]),
                      "rank_score": float(res["scores"][k])})
    return items


def write_case(name: str, out_root: Path) -> str:
    from safetensors.numpy import save_file

    if name == "demo_random":
        cfg, model = random_model()
    elif name == "demo_ckpt":
        cfg, model, why = ckpt_model()
        if model is None:
            return f"skipped: {why}"
    else:
        raise ValueError(f"unknown case {name!r} ({', '.join(CASES)})")
    out = out_root / name
    write_model_dir(out, cfg, {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()},
                    tokenizer.build_tokenizer_json())
    S = int(cfg["image_size"])
    img = scene_image(S)
    h, w = img.shape[:2]
    (out / "image.rgb").write_bytes(np.ascontiguousarray(img).tobytes())
    canvas = np.zeros((1, S, S, 3), np.float32)
    canvas[0, :h, :w] = img
    mask = np.zeros((1, S, S), np.float32)
    mask[0, :h, :w] = 1
    c = model.proposal_head.c
    G, C = c["grid_size"], c["input_dim"]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        enc = model.encode(torch.from_numpy(canvas), torch.from_numpy(mask))
        feats = torch.cat([enc["features"], torch.randn(2, G, G, C, generator=gen)])
        maps = model.proposal_head(feats)
    arrays = {"features": feats.numpy(), "heatmap": maps["heatmap"].numpy(), "box_regs": maps["box_regs"].numpy()}
    counts = []
    for j, (fi, frac, over) in enumerate(POST_VARIANTS):
        hw = (float(h), float(w)) if frac is None else (float(round(S * frac[0])), float(round(S * frac[1])))
        pc = {**c, **over}
        one = {k: v[fi:fi + 1] for k, v in maps.items()}
        boxes, scores, cells = cells_of(one, hw, pc)
        arrays[f"post{j}_params"] = np.array([fi, hw[0], hw[1], pc["stride"], pc["pre_nms_topk"],
                                              pc["score_threshold"], pc["iou_threshold"], pc["max_detections"]],
                                             np.float32)
        arrays[f"post{j}_boxes"] = boxes.reshape(-1, 4)
        arrays[f"post{j}_scores"] = scores
        arrays[f"post{j}_cells"] = cells
        counts.append(len(cells))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()},
              str(out / "proposal.safetensors"))
    ctx = tokenizer.encode_context(scenes.REGION_PROMPT)
    runs = [{"options": o, "items": dense_run(model, enc, torch.tensor(ctx), o)} for o in DENSE_RUNS]
    (out / "expected.json").write_text(json.dumps({
        "width": w, "height": h, "prompt": scenes.REGION_PROMPT, "context_tokens": ctx, "runs": runs}) + "\n")
    return f"kept per post-processing case {counts}; dense items {[len(r['items']) for r in runs]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "fixtures" / "proposal"))
    ap.add_argument("--cases", default=",".join(CASES))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in [c for c in a.cases.split(",") if c]:
        print(f"{name}: {write_case(name, Path(a.out))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
