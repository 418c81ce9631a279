"""The COMMITTED fixtures (`test/fixtures/reference/`, <= 10 MB): a tiny seeded model and the reference's outputs on
it for what the official golden files do not cover (every component's intermediate tensors, the KV-cache decode
steps, beam search, proposals + NMS, describe / segment / refer / dense captioning on a non-square image).

The model is the demo architecture (`pixelllm_ref.configs.demo_official`, GIT head, proposal head, demo tokenizer)
at reduced sizes (`tiny_official`), built through `configs.our_config` + `train.build_model`. Two sizes the official
code fixes are smaller here so the whole set fits: the SAM neck / prompt encoder / mask decoder width is 64 (not 256)
and the mask decoder's IoU head is 32 wide; the modules read them from config.json, so the same code paths run.
Weights come from a seeded numpy PCG64 generator (`seeded_tensors`; platform-independent, unlike torch's init):
Linear/Conv/embedding tables N(0, max(1/sqrt(fan_in), 0.02)), norm scales 1 + N(0, 0.1), other 1-D tensors
N(0, 0.05), the Fourier matrix N(0, 1), the mask adapter gate N(0, 0.5); the proposal heatmap bias is 0 and the box
bias +1 so that proposals pass the score threshold, and the EOS output bias gets +EOS_BIAS so that captions end
before the buffer does (greedy: 6 words; beam 3 keeps the official empty finished slot, zeros with score -1e7).

Files written into OUT (default test/fixtures/reference; README.md there is hand-written and left alone):
  model/config.json, model/model.safetensors (float32), model/tokenizer.json   the model directory
  image.rgb        (height, width, 3) uint8 demo scene; width = image_size, height < image_size, and
                   data.resized_hw(h, w, S) == (h, w): the pipeline pads without resampling, so original pixels
                   are model pixels (boxes below are in both)
  expected.json    what the lib API returns (see `api_expected`): caption (greedy), beam2 / beam3 (beams = 2, 3,
                   per-node 2, alpha 0.6, no repeat rule: the official beam search), describe (a box), refer (with
                   mask), segment, dense (proposal head + NMS + region captions, two option sets), plus
                   `tolerance` and `margins` (how far each discrete decision is from flipping)
  tensors.safetensors  float32 intermediates (token ids stored as exact float32 integers; the native reader takes
                   F32/F16/BF16 only), see `intermediates`
Every decision the fixtures pin (greedy / beam tokens, NMS keeps, dense order) is checked to survive a relative
perturbation of 1e-4 of the logits / maps (`robust_*`), so another fp32 implementation must reproduce them.

Reproducibility: torch threads 1, no randomness at run time; two runs write byte-identical files on one machine.
`--check` regenerates into a temporary folder and compares with OUT: file set, JSON (numbers within `--rtol`,
everything else exact) and tensors (same names / shapes, relative L2 <= `--rtol`, default 1e-5: a different CPU's
vector kernels may change the last bits); it prints whether everything was bit-identical.

Usage (from anywhere): engines/reference/.venv/bin/python engines/reference/scripts/fixtures_committed.py [--out DIR]
                       [--check [--rtol R]]
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_proposal import dense_run  # noqa: E402
from pixelllm_ref.mask_postprocess import postprocess_mask  # noqa: E402
from pixelllm_ref import configs, convert, data, decoding, preprocess, scenes, tokenizer, train  # noqa: E402
from pixelllm_ref import proposal_head as ph  # noqa: E402
from pixelllm_ref.scene_render import render  # noqa: E402

OUT = ROOT / "test" / "fixtures" / "reference"
SEED = 20240607
SCENE_SEED = 10 ** 9 + 11
IMAGE = 112
EOS_BIAS = 1.0          # added to the EOS logit so that decodes finish before max_caption_length
PERTURB = 1e-4          # relative noise the pinned decisions must survive
ROBUST_TRIES = 3
BEAMS = (2, 3)
DESCRIBE_BOX = [10.5, 8.25, 70.0, 60.75]   # x0, y0, x1, y1 (original = model pixels)
SEGMENT_BOX = [40.0, 20.0, 104.5, 70.0]
DENSE_RUNS = ({}, {"maxBoxes": 2, "scoreThreshold": 0.2, "nmsIou": 0.3, "maxTokens": 5})
GENERATED = ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "image.rgb", "expected.json",
             "tensors.safetensors")


# ---- the model ---------------------------------------------------------------------------------------------------
def tiny_official() -> dict:
    """The demo architecture in official keys at reduced sizes (image 112: EVA02 grid 8, SAM grid 7, window 4)."""
    off = configs.demo_official()
    img = [IMAGE, IMAGE]
    off.update({
        "source": "pixelllm test fixture (demo architecture, reduced sizes, seeded random weights)",
        "git_backbone": {"name": "eva02_vit", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 14,
                         "mlp_ratio": 4 * 2 / 3, "use_ln_post": True, "image_size": img, "pretrain_img_size": IMAGE},
        "sam_backbone": {"name": "sam_vit", "embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": 4,
                         "window_block_indexes": [0], "out_chans": 64, "image_size": img, "img_size": IMAGE},
        "prompt_encoder": {"name": "sam_prompt_encoder", "embed_dim": 64},
        "prompt_adapter": {"name": "sam_prompt_adapter", "depth": 1, "transformer_dim": 32, "output_dim": 48,
                           "num_outputs": 8},
        "mask_adapter": {"name": "sam_mask_adapter", "gating": True, "depth": 1, "transformer_dim": 64},
        "text_decoder": {"name": "git", "hidden_size": 48, "num_heads": 2, "num_hidden_layers": 2,
                         "max_caption_length": 24},
        "point_predictor": {"name": "mlp_point_predictor", "num_output_points": 2, "pre_norm": True,
                            "mlp_activation": "gelu", "depth": 3, "hidden_dim": 32},
        "max_caption_length": 16,
        "box_decoder": {"name": "centernet_proposal", "num_classes": -1, "channels": 32, "num_convs": 1,
                        "iou_thresh": 0.5, "score_thresh": 0.05, "pre_nms_topk_test": 50, "post_nms_topk_test": 6},
    })
    return off


def tiny_config() -> dict:
    cfg = configs.our_config(tiny_official())
    cfg["mask_decoder"].update({"transformer_dim": 64, "iou_head_hidden_dim": 32})   # official: 256, 256
    return cfg


def seeded_tensors(model: torch.nn.Module, seed: int = SEED) -> dict[str, np.ndarray]:
    """Every parameter drawn from numpy's PCG64 in sorted-name order (module docstring)."""
    norms = {f"{n}.weight" for n, m in model.named_modules() if "Norm" in type(m).__name__}
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        z = rng.standard_normal(shape)
        if name in norms:
            v = 1.0 + 0.1 * z
        elif name.endswith("positional_embedding"):
            v = z
        elif name.endswith("alpha_output.weight"):
            v = 0.5 * z
        elif name == "proposal_head.scale":
            v = 1.0 + 0.1 * z
        elif len(shape) >= 2:
            v = z * max(1.0 / np.sqrt(np.prod(shape[1:])), 0.02)
        else:
            v = 0.05 * z
        out[name] = v.astype(np.float32)
    out["proposal_head.agn_hm.bias"][:] = 0.0
    out["proposal_head.bbox_pred.bias"] += 1.0
    out["git_decoder.output.bias"][tokenizer.EOS_ID] += EOS_BIAS
    return out


def build(seed: int = SEED):
    cfg = tiny_config()
    model = train.build_model(cfg)
    tensors = seeded_tensors(model, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return cfg, tensors, model.eval()


def scene_image() -> np.ndarray:
    """(h, IMAGE, 3) uint8 with resized_hw(h, IMAGE, IMAGE) == (h, IMAGE)."""
    for h in range(int(IMAGE * 0.7), IMAGE):
        if data.resized_hw(h, IMAGE, IMAGE) == (h, IMAGE):
            return render(scenes.make_layout(SCENE_SEED), h, IMAGE).image
    raise RuntimeError("no identity-resize height found")


# ---- robustness of the pinned decisions ------------------------------------------------------------------------
class NoisyDecoder:
    """A TextDecoder (decoding.TextDecoder) whose logits get relative N(0, PERTURB) noise."""

    def __init__(self, inner, seed: int):
        self.inner, self.g = inner, torch.Generator().manual_seed(seed)

    def _noise(self, logits):
        return logits + PERTURB * logits.abs().amax() * torch.randn(logits.shape, generator=self.g)

    def forward(self, visual, context, tokens):
        logits, hidden = self.inner.forward(visual, context, tokens)
        return self._noise(logits), hidden

    def prefill(self, visual, context, max_len):
        return self.inner.prefill(visual, context, max_len)

    def step(self, state, tokens, position):
        logits, hidden = self.inner.step(state, tokens, position)
        return self._noise(logits), hidden

    def reorder(self, state, index):
        self.inner.reorder(state, index)


def robust_decode(model, vis, ctx, max_len: int, want: torch.Tensor, **kw) -> None:
    """The decode's tokens survive logit noise (a second implementation's rounding cannot flip them)."""
    for s in range(ROBUST_TRIES):
        dec = NoisyDecoder(model.text, s)
        if kw.get("method", "greedy") == "greedy":
            got = decoding.greedy_decode(dec, vis, ctx, bos_id=model.bos, eos_id=model.eos, max_len=max_len).tokens
        else:
            got = decoding.beam_search(dec, vis, ctx, bos_id=model.bos, eos_id=model.eos, max_len=max_len,
                                       beam_size=kw["beam_size"]).beam_tokens
        if not torch.equal(got, want):
            raise AssertionError(f"decode {kw} is not robust to {PERTURB} logit noise: pick another SEED")


def greedy_margin(step_logits: list, tokens: torch.Tensor) -> float:
    """Smallest gap between the chosen and the runner-up log-prob over the greedy steps (repeat rule applied)."""
    gaps = []
    for cur, lg in enumerate(step_logits, start=1):
        row = lg[0].clone()
        last = int(tokens[0, cur - 1])
        row[last] = min(float(row[last]), decoding.REPEAT_LOGIT)
        top = torch.topk(torch.log_softmax(row, -1), 2).values
        gaps.append(float(top[0] - top[1]))
    return min(gaps)


# ---- computation -----------------------------------------------------------------------------------------------
def _f(x) -> list:
    return np.asarray(x, dtype=np.float64).tolist()


def until_eos(row, eos: int) -> list[int]:
    row = [int(t) for t in row]
    return row[: row.index(eos) + 1] if eos in row else row


def text_task(model, enc, vis, out: dict, ctx, capped: bool) -> dict:
    """API-level view of one decoded / teacher-forced row: words, per-word log-probs and corners, box, score."""
    eos = model.eos
    seq = until_eos(out["text_tokens"][0, 0], eos)
    words = seq[1:-1] if seq[-1] == eos else seq[1:]
    tf = model.teacher_forced(enc, vis, out["text_tokens"], ctx)
    logits = tf["text_logits"][0, 0]
    lps = []
    for p in range(1, len(seq)):
        row = logits[p - 1].clone()
        if capped:
            row[seq[p - 1]] = torch.minimum(row[seq[p - 1]], torch.tensor(decoding.REPEAT_LOGIT))
        lps.append(float(torch.log_softmax(row, -1)[seq[p]]))
    coords = out["point_coords"][0, 0]
    return {"tokens": words, "sequence": seq, "logprobs": lps[: len(words)],
            "corners": coords[1: 1 + len(words)].reshape(len(words), 4).tolist(),
            "box": _f(out["detection_boxes"][0, 0]), "all_logprobs": lps}


def mask_view(model, logits: torch.Tensor, iou: torch.Tensor, hw) -> dict:
    mask, near = postprocess_mask(logits.numpy(), hw, model.image_size[0], hw, "sam")
    ev, ev_near = postprocess_mask(logits.numpy(), hw, model.image_size[0], hw, "evaluator")
    return {"iou": float(iou), "mask_b64": base64.b64encode(mask.astype(np.uint8).tobytes()).decode(),
            "mask_fraction_near_zero": near, "mask_size": list(logits.shape),
            "mask_evaluator_b64": base64.b64encode(ev.astype(np.uint8).tobytes()).decode(),
            "mask_evaluator_fraction_near_zero": ev_near}


def masks_for(model, enc, box, vis, tokens, ctx, arrays: dict, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
    """prepare_text_features (full pass on the cleaned row) + prompt encoder boxes + mask adapter + mask decoder,
    recording every intermediate under `tag`."""
    tok = decoding.clean_after_eos(tokens, model.eos)
    tf = model.teacher_forced(enc, vis, tok, ctx)
    pe = model.prompt_encoder
    box_sparse = pe.embed_boxes(box, model.image_size)
    adapted = model.mask_adapter(box_sparse, vis, tf["text_feats"])
    masks, iou = model.predict_masks(enc, box, vis, tf["text_feats"])
    arrays.update({f"{tag}_mask_row": tok[0, 0], f"{tag}_mask_text_feats": tf["text_feats"][0, 0],
                   f"{tag}_box_sparse": box_sparse[0, 0], f"{tag}_adapted_sparse": adapted[0, 0],
                   f"{tag}_mask_logits": masks[0, 0], f"{tag}_iou": iou[0]})
    return masks[0, 0], iou[0, 0]


@torch.no_grad()
def compute(cfg: dict, model, rgb: np.ndarray) -> tuple[dict, dict]:
    """(tensors for tensors.safetensors, expected.json)."""
    S = int(cfg["image_size"])
    h, w = rgb.shape[:2]
    canvas = torch.zeros(1, S, S, 3)
    canvas[0, :h, :w] = torch.from_numpy(rgb.astype(np.float32))
    pm = torch.zeros(1, S, S)
    pm[0, :h, :w] = 1
    L = model.max_len
    a: dict[str, torch.Tensor] = {"images": canvas, "padding_mask": pm}
    exp: dict = {"width": w, "height": h, "image": "image.rgb", "max_caption_length": L, "perturbation": PERTURB,
                 "tolerance": {"rel_l2": 1e-4, "box_px": 0.01}, "margins": {}}

    # image side
    sam_sec, eva_sec = cfg["sam_image_encoder"], cfg["eva02_encoder"]
    a["sam_input"] = preprocess.preprocess_sam(canvas, pm, (S, S), sam_sec["pixel_mean"], sam_sec["pixel_std"])
    a["eva02_input"] = preprocess.preprocess_eva02(canvas, pm, (S, S), eva_sec["pixel_mean"], eva_sec["pixel_std"])
    enc = model.encode(canvas, pm)
    a.update(sam_features=enc["sam"], eva02_features=enc["eva02"], fused_features=enc["features"],
             valid_hw=enc["image_hw"][0])

    # prompts: whole image, describe box, segment box
    boxes = torch.tensor([[0.0, 0.0, float(w), float(h)], DESCRIBE_BOX, SEGMENT_BOX])[None]
    pe = model.prompt_encoder
    f = enc["features"]
    a.update(prompt_boxes=boxes[0], prompt_sparse=pe.sparse_for_adapter(boxes, model.image_size)[0],
             dense_pe=pe.get_dense_pe(f.shape[1], f.shape[2]),
             dense_pe_sam=pe.get_dense_pe(enc["sam"].shape[1], enc["sam"].shape[2]),
             no_mask_embed=pe.dense_embedding()[0])
    vis_all = model.visual_tokens(enc, boxes)
    a["visual_tokens"] = vis_all[0]
    vis_whole, vis_desc, vis_seg = (vis_all[:, i:i + 1] for i in range(3))

    # caption: greedy with the KV cache, every step's logits; equal to the full recompute
    rows = vis_whole[:, 0]
    g = decoding.greedy_decode(model.text, rows, None, bos_id=model.bos, eos_id=model.eos, max_len=L, record=True)
    g_full = decoding.greedy_decode(model.text, rows, None, bos_id=model.bos, eos_id=model.eos, max_len=L,
                                    use_cache=False, record=True)
    if not torch.equal(g.tokens, g_full.tokens):
        raise AssertionError("greedy: KV cache and full recompute disagree")
    robust_decode(model, rows, None, L, g.tokens)
    exp["margins"]["caption_logprob_gap"] = greedy_margin(g.step_logits, g.tokens)
    a.update(caption_step_logits=torch.stack(g.step_logits)[:, 0], caption_step_hidden=torch.stack(g.step_hidden)[:, 0],
             caption_full_step_logits=torch.stack(g_full.step_logits)[:, 0])
    cap = model.generate(enc, vis_whole)
    if not torch.equal(cap["text_tokens"][0, 0], decoding.clean_after_eos(g.tokens, model.eos)[0]):
        raise AssertionError("generate and greedy_decode disagree")
    tf = model.teacher_forced(enc, vis_whole, cap["text_tokens"])
    a.update(caption_tokens=cap["text_tokens"][0, 0], caption_log_probs=cap["log_probs"][0],
             caption_tf_logits=tf["text_logits"][0, 0], caption_text_feats=cap["text_feats"][0, 0],
             caption_point_coords=cap["point_coords"][0, 0], caption_point_logits=cap["point_logits"][0, 0],
             caption_box=cap["detection_boxes"][0, 0])
    exp["caption"] = {**text_task(model, enc, vis_whole, cap, None, True), "score": float(cap["log_probs"][0, 0])}

    # beam search (official rules), every step's logits of every beam row
    for k in BEAMS:
        b = decoding.beam_search(model.text, rows, None, bos_id=model.bos, eos_id=model.eos, max_len=L, beam_size=k,
                                 record=True)
        robust_decode(model, rows, None, L, b.beam_tokens, method="beam", beam_size=k)
        out = model.generate(enc, vis_whole, method="beam", beam_size=k)
        if not torch.equal(out["beam_text_tokens"][0, 0], b.beam_tokens[0]):
            raise AssertionError("generate and beam_search disagree")
        a.update({f"beam{k}_tokens": b.beam_tokens[0], f"beam{k}_scores": b.beam_scores[0],
                  f"beam{k}_step_logits": torch.stack(b.step_logits), f"beam{k}_point_coords": out["point_coords"][0, 0],
                  f"beam{k}_box": out["detection_boxes"][0, 0]})
        t = text_task(model, enc, vis_whole, out, None, False)
        exp[f"beam{k}"] = {**t, "score": float(out["log_probs"][0, 0]),
                           "beams": [until_eos(r, model.eos) for r in b.beam_tokens[0]],
                           "beam_scores": _f(b.beam_scores[0])}

    # describe: the user's box as the prompt
    out = model.generate(enc, vis_desc)
    robust_decode(model, vis_desc[:, 0], None, L, decoding.greedy_decode(
        model.text, vis_desc[:, 0], None, bos_id=model.bos, eos_id=model.eos, max_len=L).tokens)
    a.update(describe_tokens=out["text_tokens"][0, 0], describe_point_coords=out["point_coords"][0, 0],
             describe_box=out["detection_boxes"][0, 0])
    exp["describe"] = {**text_task(model, enc, vis_desc, out, None, True), "score": float(out["log_probs"][0, 0]),
                       "prompt_box": DESCRIBE_BOX}

    # refer: "where is <expression>" context, the expression teacher-forced, mask from the predicted box
    layout = scenes.make_layout(SCENE_SEED)
    from pixelllm_ref.eval_scenes import refer_expressions
    expr = refer_expressions(layout)[0]
    ctx_ids, text_ids = tokenizer.refer_context(expr), tokenizer.encode_caption(expr)
    ctx = torch.zeros(1, 1, L, dtype=torch.long)
    ctx[0, 0, :len(ctx_ids)] = torch.tensor(ctx_ids)
    txt = torch.zeros(1, 1, L, dtype=torch.long)
    txt[0, 0, :len(text_ids)] = torch.tensor(text_ids)
    ref = model.generate(enc, vis_whole, ctx, txt)
    r = text_task(model, enc, vis_whole, ref, ctx, False)
    rm, ri = masks_for(model, enc, ref["detection_boxes"], vis_whole, ref["text_tokens"], ctx, a, "refer")
    a.update(refer_context=ctx[0, 0], refer_text=txt[0, 0], refer_point_coords=ref["point_coords"][0, 0],
             refer_box=ref["detection_boxes"][0, 0])
    exp["refer"] = {**r, "score": float(np.mean(r["all_logprobs"])), "expression": expr, "context_tokens": ctx_ids,
                    "text_tokens": text_ids, **mask_view(model, rm, ri, (h, w))}

    # segment: describe the box (greedy, no context), mask prompted with the USER box
    seg = model.generate(enc, vis_seg)
    sbox = torch.tensor(SEGMENT_BOX)[None, None]
    sm, si = masks_for(model, enc, sbox, vis_seg, seg["text_tokens"], None, a, "segment")
    exp["segment"] = {"box": SEGMENT_BOX, "tokens": until_eos(seg["text_tokens"][0, 0], model.eos),
                      **mask_view(model, sm, si, (h, w))}

    # proposals (heatmap / box regressions + NMS) and dense captioning
    maps = model.proposal_head(enc["features"])
    kept_b, kept_s = ph.postprocess(maps, enc["image_hw"], {ph.NAME: model.proposal_head.c})[0]
    a.update(proposal_heatmap=maps["heatmap"][0], proposal_box_regs=maps["box_regs"][0], proposal_boxes=kept_b,
             proposal_scores=kept_s)
    robust_proposals(model, maps, enc["image_hw"], kept_b)
    ctx_dense = tokenizer.encode_context(scenes.REGION_PROMPT)
    exp["dense"] = {"prompt": scenes.REGION_PROMPT, "context_tokens": ctx_dense,
                    "runs": [{"options": o, "items": dense_run(model, enc, torch.tensor(ctx_dense), o)}
                             for o in DENSE_RUNS]}
    for run in exp["dense"]["runs"]:
        if not run["items"]:
            raise AssertionError(f"dense run {run['options']} kept nothing: pick another SEED")
    return {k: v.detach().to(torch.float32).contiguous().numpy() for k, v in a.items()}, exp


def robust_proposals(model, maps: dict, image_hw, kept: torch.Tensor) -> None:
    c = {ph.NAME: model.proposal_head.c}
    g = torch.Generator().manual_seed(0)
    for _ in range(ROBUST_TRIES):
        noisy = {k: v + PERTURB * v.abs().amax() * torch.randn(v.shape, generator=g) for k, v in maps.items()}
        noisy["box_regs"] = noisy["box_regs"].clamp(min=0)
        b, _ = ph.postprocess(noisy, image_hw, c)[0]
        if b.shape != kept.shape or (b - kept).abs().max() > 0.05:
            raise AssertionError("proposals are not robust to map noise: pick another SEED")


# ---- writing and checking --------------------------------------------------------------------------------------
COMMITTED_MODEL_METADATA = {"format": "pt"}  # what the committed model.safetensors carries (kept: bytes stay put)


def write_model(out: Path, cfg: dict, tensors: dict[str, np.ndarray]) -> None:
    convert.write_model_dir(out, cfg, tensors, tokenizer.build_tokenizer_json(), metadata=COMMITTED_MODEL_METADATA)


def write(out: Path) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg, tensors, model = build()
    rgb = scene_image()
    write_model(out / "model", cfg, tensors)
    (out / "image.rgb").write_bytes(np.ascontiguousarray(rgb).tobytes())
    arrays, exp = compute(cfg, model, rgb)
    convert.save_safetensors(arrays, out / "tensors.safetensors",
                             metadata={"producer": "engines/reference/scripts/fixtures_committed.py"})
    (out / "expected.json").write_text(json.dumps(exp, indent=1) + "\n")


def _close_json(a, b, rtol: float, path: str, errors: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            errors.append(f"{path}: keys differ {sorted(set(a) ^ set(b))}")
            return
        for k in a:
            _close_json(a[k], b[k], rtol, f"{path}.{k}", errors)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            errors.append(f"{path}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _close_json(x, y, rtol, f"{path}[{i}]", errors)
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if abs(a - b) > rtol * max(abs(a), abs(b), 1.0):
            errors.append(f"{path}: {a} != {b}")
    elif a != b or type(a) is not type(b):
        errors.append(f"{path}: {a!r} != {b!r}")


def compare(new: Path, old: Path, rtol: float) -> tuple[list[str], list[str]]:
    """(errors, files that are not byte-identical) between two fixture folders."""
    from safetensors.numpy import load_file

    errors, changed = [], []
    for name in GENERATED:
        p, q = new / name, old / name
        if not q.is_file():
            errors.append(f"{name}: missing in {old}")
            continue
        if p.read_bytes() == q.read_bytes():
            continue
        changed.append(name)
        if name.endswith(".safetensors"):
            x, y = load_file(str(p)), load_file(str(q))
            if x.keys() != y.keys():
                errors.append(f"{name}: tensor names differ {sorted(set(x) ^ set(y))}")
                continue
            for k in x:
                if x[k].shape != y[k].shape:
                    errors.append(f"{name}:{k}: shape {x[k].shape} != {y[k].shape}")
                    continue
                d = np.linalg.norm((x[k] - y[k]).astype(np.float64))
                n = max(np.linalg.norm(y[k].astype(np.float64)), 1e-12)
                if d / n > rtol:
                    errors.append(f"{name}:{k}: rel L2 {d / n:.3g} > {rtol}")
        elif name.endswith(".json"):
            _close_json(json.loads(p.read_text()), json.loads(q.read_text()), rtol, name, errors)
        else:
            errors.append(f"{name}: bytes differ")
    return errors, changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    ap.add_argument("--rtol", type=float, default=1e-5)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.check:
        write(out)
        size = sum(out.joinpath(n).stat().st_size for n in GENERATED)
        print(f"fixtures_committed: wrote {out} ({size / 1e6:.2f} MB)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="pixelllm-fixtures-"))
    try:
        write(tmp)
        errors, changed = compare(tmp, out, args.rtol)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        print(f"fixtures_committed --check: {len(errors)} difference(s) with {out}:")
        for e in errors[:50]:
            print("  " + e)
        print("regenerate with `npm run fixtures` and commit if the change is intended")
        return 1
    print(f"fixtures_committed --check: {out} reproduced "
          + ("bit-identically" if not changed else f"within rel L2 {args.rtol} (not byte-identical: {changed})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
