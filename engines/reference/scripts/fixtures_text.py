"""Fixtures for the native text side (git_decoder | t5, point_head, decoding).

For each golden case writes into `build/fixtures/golden/<case>/`:
- the converted model directory (`config.json`, `model.safetensors`) from `pixelllm_ref.convert`;
- `text.safetensors` (every array float32; token ids are stored as exact float32 integers because the native
  safetensors reader takes F32/F16/BF16 only):
    visual (T, D)                 the official visual tokens (golden out_tf_visual_features[0, 0])
    context (Lc,)                 golden input_context_tokens ("where is <expr>" + EOS, 0-padded)
    text_tokens (L,)              golden input_text_tokens (BOS <expr> EOS, 0-padded)
    valid_hw (2,)                 unpadded image (height, width) from the padding mask (official get_image_shape)
    max_len (1,)                  official max_caption_length (decode buffer length)
    golden_<key>                  the official outputs: tf_text_logits (L,V), tf_text_feats (L,D),
                                  tf_point_coords (L,2,2), tf_point_logits (L,2,2), cap_text_tokens (L,),
                                  cap_log_probs (1,), cap_point_coords (L,2,2), cap_detection_boxes (4,),
                                  ref_point_coords (L,2,2), ref_detection_boxes (4,)
    ref_tf_logits, ref_tf_hidden  reference decoder.forward(visual, None, text_tokens) (the golden tf pass)
    ref_cap_* / ref_ref_*         reference decoding.text_inference (greedy caption; teacher-forced referring with
                                  the context): text_tokens, log_probs, point_coords, detection_boxes, text_feats
    ref_beam{K}_tokens (K, L), ref_beam{K}_scores (K,), ref_beam{K}_point_coords (L,2,2),
    ref_beam{K}_detection_boxes (4,)   reference official beam search (increasing score order, best last) with
                                  beam_size K, per_node_beam_size 2, alpha 0.6, caption (no context), for K in 2, 4;
    ref_beam3c_*                  the same with the context tokens, beam_size 3, per_node_beam_size 1
Each reference array is checked against the golden one here (rel L2 <= 1e-4, tokens identical) so a fixture is
never written from a reference that disagrees with the official outputs.

Usage: .venv/bin/python scripts/fixtures_text.py [--out DIR] [--cases bert_s0_h384,...]
Run from engines/reference (the repo root is found from this file).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

from pixelllm_ref import convert, decoding, git_decoder, point_head, t5  # noqa: E402
from pixelllm_ref.golden import fixture_main, load_golden, rel_l2  # noqa: E402

BEAMS = (("beam2", 2, 2, False), ("beam4", 4, 2, False), ("beam3c", 3, 1, True))


def _load(prefix: str, cls, cfg, tensors):
    model = cls(cfg).eval()
    own = {k[len(prefix) + 1:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix + ".")}
    model.load_state_dict(own, strict=True)
    return model


def _check(what: str, ours: np.ndarray, golden: np.ndarray, tol: float = 1e-4) -> float:
    err = rel_l2(ours, golden)
    if not err <= tol:
        raise AssertionError(f"{what}: reference vs golden rel L2 {err:.3e} > {tol}")
    return err


def write_case(name: str, out_root: Path) -> None:
    from safetensors.numpy import save_file

    g = load_golden(name)
    cfg, tensors = convert.convert(g.params, g.official_config)
    out = out_root / name
    convert.write_model_dir(out, cfg, tensors)
    head = cfg["text_decoder"]
    dec = _load(head, git_decoder.GitDecoder if head == "git_decoder" else t5.T5, cfg, tensors)
    points = _load("point_head", point_head.PointHead, cfg, tensors)
    bos, eos, max_len = cfg["bos_token_id"], cfg["eos_token_id"], cfg["max_caption_length"]
    ignore = cfg["point_head"]["point_output_ignore"]

    visual = torch.from_numpy(g.outputs["tf_visual_features"][0].astype(np.float32))       # (1, T, D)
    context = torch.from_numpy(g.inputs["context_tokens"][0].astype(np.int64))              # (1, Lc)
    text = torch.from_numpy(g.inputs["text_tokens"][0].astype(np.int64))                    # (1, L)
    hw = point_head.image_shape_from_padding_mask(torch.from_numpy(g.inputs["padding_mask"]))  # (1, 2)

    a: dict[str, np.ndarray] = {
        "visual": visual[0].numpy(),
        "context": context[0].numpy().astype(np.float32),
        "text_tokens": text[0].numpy().astype(np.float32),
        "valid_hw": hw[0].numpy().astype(np.float32),
        "max_len": np.array([max_len], dtype=np.float32),
    }
    o = g.outputs
    gold = {
        "tf_text_logits": o["tf_text_logits"][0], "tf_text_feats": o["tf_text_feats"][0],
        "tf_point_coords": o["tf_point_coords"][0, 0], "tf_point_logits": o["tf_point_logits"][0, 0],
        "cap_text_tokens": o["cap_text_tokens"][0, 0], "cap_log_probs": o["cap_log_probs"][0],
        "cap_point_coords": o["cap_point_coords"][0, 0], "cap_detection_boxes": o["cap_detection_boxes"][0, 0],
        "ref_point_coords": o["ref_point_coords"][0, 0], "ref_detection_boxes": o["ref_detection_boxes"][0, 0],
    }
    for k, v in gold.items():
        a["golden_" + k] = np.asarray(v, dtype=np.float32)

    with torch.no_grad():
        logits, hidden = dec.forward(visual, None, text)
        a["ref_tf_logits"], a["ref_tf_hidden"] = logits[0].numpy(), hidden[0].numpy()
        errs = [_check("tf logits", a["ref_tf_logits"], gold["tf_text_logits"])]

        kw = dict(bos_id=bos, eos_id=eos, max_len=max_len, point_output_ignore=ignore)
        cap = decoding.text_inference(dec, points, visual, None, hw, **kw)
        ref = decoding.text_inference(dec, points, visual, context, hw, text_tokens=text, **kw)
        for tag, r in (("cap", cap), ("ref", ref)):
            a[f"ref_{tag}_text_tokens"] = r["text_tokens"][0].numpy().astype(np.float32)
            a[f"ref_{tag}_point_coords"] = r["point_coords"][0].numpy()
            a[f"ref_{tag}_detection_boxes"] = r["detection_boxes"][0].numpy()
            a[f"ref_{tag}_text_feats"] = r["text_feats"][0].numpy()
            errs.append(_check(f"{tag} points", a[f"ref_{tag}_point_coords"], gold[f"{tag}_point_coords"]))
            errs.append(_check(f"{tag} boxes", a[f"ref_{tag}_detection_boxes"], gold[f"{tag}_detection_boxes"]))
        a["ref_cap_log_probs"] = cap["log_probs"].numpy().astype(np.float32)
        errs.append(_check("cap log_probs", a["ref_cap_log_probs"], gold["cap_log_probs"]))
        golden_clean = decoding.clean_after_eos(torch.from_numpy(gold["cap_text_tokens"].astype(np.int64)), eos)
        if not np.array_equal(a["ref_cap_text_tokens"], golden_clean.numpy().astype(np.float32)):
            raise AssertionError("greedy tokens differ from the golden caption")

        for tag, k, per_node, with_ctx in BEAMS:
            r = decoding.text_inference(dec, points, visual, context if with_ctx else None, hw, method="beam",
                                        beam_size=k, per_node_beam_size=per_node, alpha=0.6, **kw)
            a[f"ref_{tag}_tokens"] = r["beam_text_tokens"][0].numpy().astype(np.float32)
            a[f"ref_{tag}_scores"] = r["beam_log_probs"][0].numpy().astype(np.float32)
            a[f"ref_{tag}_point_coords"] = r["point_coords"][0].numpy()
            a[f"ref_{tag}_detection_boxes"] = r["detection_boxes"][0].numpy()

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in a.items()}, str(out / "text.safetensors"),
              metadata={"producer": "engines/reference/scripts/fixtures_text.py", "case": name})
    best = a["ref_beam4_tokens"][-1].astype(int).tolist()
    print(f"{name}: wrote {out}  ref-vs-golden max rel L2 {max(errs):.2e}  beam4 best {best}")


def main(argv=None) -> int:
    return fixture_main(write_case, __doc__, ROOT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
