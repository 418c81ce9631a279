"""Fixtures for the native prompt and mask side (prompt_encoder, prompt_adapter, mask_adapter, mask_decoder,
mask post-processing and COCO RLE).

For each golden case writes into `build/fixtures/golden/<case>/`:
- the converted model directory (`config.json`, `model.safetensors`) from `pixelllm_ref.convert`;
- `prompt_mask.safetensors` (float32 arrays; the COCO RLE strings live in the file's metadata):
    fused_features (h,w,C)        official backbone maps fused by the reference FeatureFusion (EVA02 ; SAM 24->27)
    sam_features (24,24,256)      golden out_sam_visual_features[0]
    prompt_boxes (P,4)            golden input_prompt_boxes[0]
    ref_sparse (P,T,256)          reference PromptEncoder.sparse_for_adapter (the adapter's prompt tokens)
    ref_dense_pe (h,w,256)        reference get_dense_pe of the fused grid; ref_dense_pe_sam (24,24,256) of the SAM grid
    ref_visual_tokens (P,32,D)    reference prompt adapter output; golden_visual_tokens = out_tf_visual_features[0]
    extra_boxes (3,4)             [all-zero box (point-grid fallback), a small box, the whole image]
    ref_extra_sparse (3,T,256), ref_extra_visual_tokens (3,32,D)   the reference on those prompts
    ref_dense_fuse_tokens (P,h*w,D)  the reference adapter with prompt_fuse_fn "dense" (same weights)
    for tag in cap, ref (captioning / referring inference):
      {tag}_boxes (1,4)           golden out_{tag}_detection_boxes[0] (the box prompting the mask decoder)
      {tag}_text (1,L,Dt)         reference text hidden states of the decoded/teacher-forced tokens
                                  (decoding.text_inference text_feats: the full max-length row, padding included)
      {tag}_visual (1,32,D)       the visual tokens the LLM saw (golden out_tf_visual_features[0])
      ref_{tag}_box_sparse (1,2,256)   PromptEncoder.embed_boxes
      ref_{tag}_adapted (1,2,256)      MaskAdapter output (the mask decoder's sparse tokens)
      ref_{tag}_masks (1,96,96), ref_{tag}_iou (1,)      reference mask decoder (mask token 0)
      ref_{tag}_multi_masks (3,96,96), ref_{tag}_multi_iou (3,)  the same with multimask_output=True
      golden_{tag}_masks, golden_{tag}_iou               the official outputs (the judge)
    post-processing (pixelllm_ref.mask_postprocess; bilinear = half-pixel centres, edge clamp, no antialias:
    cv2.INTER_LINEAR = torch interpolate(align_corners=False)): for i in 0..:
      post{i}_params (5,)         [valid_h, valid_w, padded_size, orig_h, orig_w]
      post{i}_logits (96,96)      the low-res logits (golden cap/ref masks)
      post{i}_mask (orig_h,orig_w)  "evaluator" (official pixel_llm evaluators.rescale_and_encode_masks): crop
                                  [:int(valid_h*96/padded), :int(valid_w*96/padded)], bilinear to the original
                                  size, then > 0
      post{i}_sam_mask            "sam" (segment-anything postprocess_masks): bilinear to (padded, padded), keep
                                  [:valid_h, :valid_w], bilinear to the original size, then > 0
    COCO RLE (pycocotools.mask.encode of a Fortran-ordered mask): for j in 0..:
      rle{j}_mask (h,w)           0/1 mask (post masks, random masks, edge cases)
      rle{j}_counts (n,)          uncompressed counts (pycocotools frString of the compressed string)
      metadata rle{j} = the compressed counts string, rle{j}_size = "h,w"
Each reference tensor that has an official counterpart is checked against it (rel L2 <= 1e-4) before writing.

Usage: .venv/bin/python scripts/fixtures_prompt_mask.py [--out DIR] [--cases bert_s0_h384,...]
Run from engines/reference (the repo root is found from this file).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

from pixelllm_ref.mask_postprocess import postprocess_mask  # noqa: E402
from pixelllm_ref import (convert, decoding, feature_fusion, git_decoder, mask_adapter, mask_decoder,  # noqa: E402
                          point_head, prompt_adapter, prompt_encoder, t5)
from pixelllm_ref.golden import fixture_main, load_golden, rel_l2  # noqa: E402


def _load(prefix: str, cls, cfg, tensors):
    model = cls(cfg).eval()
    own = {k[len(prefix) + 1:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix + ".")}
    model.load_state_dict(own, strict=True)
    return model


def _check(what: str, ours, golden, tol: float = 1e-4) -> float:
    err = rel_l2(np.asarray(ours), np.asarray(golden))
    if not err <= tol:
        raise AssertionError(f"{what}: reference vs golden rel L2 {err:.3e} > {tol}")
    return err


def rle_cases(rng: np.random.Generator, post_masks: list[np.ndarray]) -> list[np.ndarray]:
    masks = list(post_masks)
    masks += [rng.random((h, w)) < p for (h, w, p) in ((1, 1, 0.5), (7, 5, 0.5), (31, 17, 0.1), (64, 48, 0.9),
                                                      (300, 384, 0.5))]
    blob = np.zeros((120, 90), bool)
    yy, xx = np.mgrid[:120, :90]
    blob[(yy - 60) ** 2 / 40 ** 2 + (xx - 40) ** 2 / 25 ** 2 < 1] = True
    masks += [np.zeros((5, 4), bool), np.ones((5, 4), bool), blob, ~blob]
    big = np.zeros((200, 300), bool)  # long runs (multi-chunk LEB128 in the compressed form)
    big[150:, 250:] = True
    masks.append(big)
    return masks


def write_case(name: str, out_root: Path) -> None:
    from pycocotools import mask as mask_api
    from safetensors.numpy import save_file

    g = load_golden(name)
    cfg, tensors = convert.convert(g.params, g.official_config)
    out = out_root / name
    convert.write_model_dir(out, cfg, tensors)
    head = cfg["text_decoder"]
    pe = _load("prompt_encoder", prompt_encoder.PromptEncoder, cfg, tensors)
    pa = _load("prompt_adapter", prompt_adapter.PromptAdapter, cfg, tensors)
    ma = _load("mask_adapter", mask_adapter.MaskAdapter, cfg, tensors)
    md = _load("mask_decoder", mask_decoder.MaskDecoder, cfg, tensors)
    dec = _load(head, git_decoder.GitDecoder if head == "git_decoder" else t5.T5, cfg, tensors)
    points = _load("point_head", point_head.PointHead, cfg, tensors)
    fusion = feature_fusion.FeatureFusion(cfg).eval()
    size = (cfg["image_size"], cfg["image_size"])
    o = g.outputs

    a: dict[str, np.ndarray] = {}
    errs = []
    with torch.no_grad():
        eva = torch.from_numpy(o["git_visual_features"].astype(np.float32))
        sam = torch.from_numpy(o["sam_visual_features"].astype(np.float32))
        fused = fusion(eva02_encoder=eva, sam_image_encoder=sam)
        boxes = torch.from_numpy(g.inputs["prompt_boxes"].astype(np.float32))
        sparse = pe.sparse_for_adapter(boxes, size)
        dense_pe = pe.get_dense_pe(fused.shape[1], fused.shape[2])
        tokens = pa(fused, dense_pe, sparse, pe.dense_embedding())
        a.update(fused_features=fused[0].numpy(), sam_features=sam[0].numpy(), prompt_boxes=boxes[0].numpy(),
                 ref_sparse=sparse[0].numpy(), ref_dense_pe=dense_pe.numpy(),
                 ref_dense_pe_sam=pe.get_dense_pe(sam.shape[1], sam.shape[2]).numpy(),
                 ref_visual_tokens=tokens[0].numpy(), golden_visual_tokens=o["tf_visual_features"][0])
        errs.append(_check("visual tokens", a["ref_visual_tokens"], a["golden_visual_tokens"]))
        # paths the golden files do not reach: several prompts incl. an all-zero box (point-grid fallback), and
        # the "dense" prompt_fuse_fn (every key of the transformer -> dense_output_mlp)
        extra = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, 20.0, 200.0, 100.0], [0.0, 0.0, 383.0, 299.0]]])
        a["extra_boxes"] = extra[0].numpy()
        a["ref_extra_sparse"] = pe.sparse_for_adapter(extra, size)[0].numpy()
        a["ref_extra_visual_tokens"] = pa(fused, dense_pe, pe.sparse_for_adapter(extra, size),
                                          pe.dense_embedding())[0].numpy()
        pa.fuse = "dense"
        a["ref_dense_fuse_tokens"] = tokens_dense = pa(fused, dense_pe, sparse, pe.dense_embedding())[0].numpy()
        pa.fuse = cfg["prompt_adapter"]["prompt_fuse_fn"]
        assert tokens_dense.shape[1] == fused.shape[1] * fused.shape[2]

        visual = torch.from_numpy(o["tf_visual_features"][0].astype(np.float32))  # (P=1, 32, D)
        context = torch.from_numpy(g.inputs["context_tokens"][0].astype(np.int64))
        text = torch.from_numpy(g.inputs["text_tokens"][0].astype(np.int64))
        hw = point_head.image_shape_from_padding_mask(torch.from_numpy(g.inputs["padding_mask"]))
        kw = dict(bos_id=cfg["bos_token_id"], eos_id=cfg["eos_token_id"], max_len=cfg["max_caption_length"],
                  point_output_ignore=cfg["point_head"]["point_output_ignore"])
        runs = {"cap": decoding.text_inference(dec, points, visual, None, hw, **kw),
                "ref": decoding.text_inference(dec, points, visual, context, hw, text_tokens=text, **kw)}
        dense_pe_sam = pe.get_dense_pe(sam.shape[1], sam.shape[2])
        for tag, r in runs.items():
            box = torch.from_numpy(o[f"{tag}_detection_boxes"].astype(np.float32))  # (1, 1, 4)
            feats = r["text_feats"][None]                                              # (1, 1, L, Dt)
            box_sparse = pe.embed_boxes(box, size)
            adapted = ma(box_sparse, visual[None], feats)
            masks, iou = md.predict(sam, dense_pe_sam, adapted, pe.dense_embedding())
            a[f"{tag}_boxes"] = box[0].numpy()
            a[f"{tag}_text"] = feats[0].numpy()
            a[f"{tag}_visual"] = visual.numpy()
            a[f"ref_{tag}_box_sparse"] = box_sparse[0].numpy()
            a[f"ref_{tag}_adapted"] = adapted[0].numpy()
            a[f"ref_{tag}_masks"] = masks[0, :, 0].numpy()
            a[f"ref_{tag}_iou"] = iou[0, :, 0].numpy()
            a[f"golden_{tag}_masks"] = o[f"{tag}_detection_masks"][0]
            a[f"golden_{tag}_iou"] = o[f"{tag}_iou_predictions"][0]
            errs.append(_check(f"{tag} masks", a[f"ref_{tag}_masks"], a[f"golden_{tag}_masks"]))
            errs.append(_check(f"{tag} iou", a[f"ref_{tag}_iou"], a[f"golden_{tag}_iou"]))
            md.multimask_output = True  # multimask_output=True: mask tokens 1..3 and their IoUs
            mm, mi = md.predict(sam, dense_pe_sam, adapted, pe.dense_embedding())
            md.multimask_output = False
            a[f"ref_{tag}_multi_masks"], a[f"ref_{tag}_multi_iou"] = mm[0, 0].numpy(), mi[0, 0].numpy()

    # post-processing: the valid region of the padded input and a few original sizes (up- and downscaling)
    m = g.inputs["padding_mask"][0] > 0.5
    vh, vw = int(m.any(axis=1).sum()), int(m.any(axis=0).sum())
    padded = cfg["image_size"]
    origs = [(vh, vw), (vh * 5 // 3, vw * 5 // 3), (vh // 2 + 1, vw // 3 + 2), (7, 5)]
    post = []
    for i, (oh, ow) in enumerate(origs):
        logits = a["golden_cap_masks"][0] if i % 2 == 0 else a["golden_ref_masks"][0]
        mk, _ = postprocess_mask(logits, (vh, vw), padded, (oh, ow), "evaluator")
        sam, _ = postprocess_mask(logits, (vh, vw), padded, (oh, ow), "sam")
        a[f"post{i}_params"] = np.array([vh, vw, padded, oh, ow], np.float32)
        a[f"post{i}_logits"] = logits.astype(np.float32)
        a[f"post{i}_mask"] = mk.astype(np.float32)
        a[f"post{i}_sam_mask"] = sam.astype(np.float32)
        post.append(mk)

    meta = {"producer": "engines/reference/scripts/fixtures_prompt_mask.py", "case": name}
    rng = np.random.default_rng(1234 + len(name))
    for j, mk in enumerate(rle_cases(rng, post)):
        rle = mask_api.encode(np.asfortranarray(mk.astype(np.uint8)))
        counts = rle["counts"].decode("ascii")
        runs = _uncompressed(counts)
        assert np.array_equal(mask_api.decode(rle).astype(bool), mk)
        assert np.array_equal(_decode_runs(runs, mk.shape), mk), "rleFrString port disagrees with pycocotools"
        a[f"rle{j}_mask"] = mk.astype(np.float32)
        a[f"rle{j}_counts"] = np.asarray(runs, np.float32)
        meta[f"rle{j}"] = counts
        meta[f"rle{j}_size"] = f"{rle['size'][0]},{rle['size'][1]}"

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in a.items()},
              str(out / "prompt_mask.safetensors"), metadata=meta)
    print(f"{name}: wrote {out}  ref-vs-golden max rel L2 {max(errs):.2e}")


def _uncompressed(s: str) -> list[int]:
    """pycocotools rleFrString: the compressed COCO string -> run lengths (LEB128-like, 6 bits, delta from i-2)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _decode_runs(runs: list[int], shape) -> np.ndarray:
    """Column-major 0/1 runs (starting with zeros) -> bool (h, w)."""
    flat = np.zeros(shape[0] * shape[1], bool)
    pos, val = 0, False
    for r in runs:
        flat[pos:pos + r] = val
        pos, val = pos + r, not val
    assert pos == flat.size
    return flat.reshape(shape[1], shape[0]).T


def main(argv=None) -> int:
    return fixture_main(write_case, __doc__, ROOT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
