"""Golden model directories + expected outputs for the end-to-end tests through the native pipeline and the addon.

For each golden case (`pixelllm_ref.golden.GOLDEN_CASES`) writes `build/golden/<case>/`:
  config.json, model.safetensors   the official golden parameters converted (`pixelllm_ref.convert`)
  tokenizer.json                   a WordPiece tokenizer over the golden vocabulary (the ids carry no language):
                                   id i is the word "t<i>", except the special ids (bos/eos/pad/unk) and the words
                                   of the golden referring context, "where" and "is", at their golden ids, so the JS
                                   API builds exactly the golden token rows from the expression text
  image.rgb                        the golden image's valid region (height x width x 3, uint8, row-major): the
                                   golden float image rounded to 0..255 (the API takes 8-bit images)
  expected.json                    the reference model (`pixelllm_ref.model.PixelLLM`, which reproduces the
                                   official outputs) run on exactly that 8-bit image:
     width, height, expression, context_tokens, text_tokens (unpadded, as the JS tokenizer builds them),
     caption / refer: tokens (words), sequence (bos..eos), score (official mean log-prob), logprobs (per word, the
       official greedy rule: previous token capped at -1e4 for the caption, plain for the teacher-forced refer),
       corners (per word, 2x2 px, ORIGINAL image), box (px), mask_logits (96x96 low-res), iou, mask_tokens (the
       cleaned 0-padded row the mask decoder read), mask_b64 (the binary mask at the original size after the
       official evaluator's post-processing, base64 of row-major 0/1 bytes), mask_fraction_near_zero (pixels whose
       upsampled logit is within 1e-3 of the threshold: a tolerance budget for the binary comparison)
     official: the golden (official, float image) caption tokens, for information
Also `build/golden/slow_bert/` (not golden: for behaviour tests that need a decode that lasts, abort mid-stream
and the event loop turning): the bert_s1_h300 model with a 100k-word vocabulary (the golden rows kept, the others
random N(0, 0.02)) and 64-token captions, the golden tokenizer, image.rgb and an expected.json with the image size.
The image is the golden valid region, so the pipeline's resize is the identity (resized_hw(h, w, 384) == (h, w))
and coordinates of the original image equal the model's.

Usage (from engines/reference): .venv/bin/python scripts/make_golden_models.py [--out DIR] [--cases a,b]
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

from pixelllm_ref.convert import write_model_dir  # noqa: E402
from pixelllm_ref.data import resized_hw  # noqa: E402
from pixelllm_ref.decoding import REPEAT_LOGIT  # noqa: E402
from pixelllm_ref.golden import GOLDEN_CASES, load_golden  # noqa: E402
from pixelllm_ref.mask_postprocess import postprocess_mask  # noqa: E402
from pixelllm_ref.model import PixelLLM, from_golden  # noqa: E402


def make_tokenizer(cfg: dict, context_words: dict[str, int]) -> str:
    """tokenizer.json (WordPiece, whitespace words) over the golden vocabulary; see the module docstring."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    v = int(cfg["vocab_size"])
    bos, eos, pad = int(cfg["bos_token_id"]), int(cfg["eos_token_id"]), int(cfg["pad_token_id"])
    if cfg["text_decoder"] == "t5":
        special = {pad: "<pad>", eos: "</s>", 2: "<unk>"}
        unk = "<unk>"
    else:
        special = {pad: "[PAD]", 100: "[UNK]", bos: "[CLS]", eos: "[SEP]"}
        unk = "[UNK]"
    special.setdefault(bos, "<bos>")
    names = {i: f"t{i}" for i in range(v)}
    names.update(special)
    for word, i in context_words.items():
        if i in special:
            raise ValueError(f"context word {word!r} collides with special id {i}")
        names[i] = word
    vocab = {name: i for i, name in names.items()}
    assert len(vocab) == v, "duplicate token names"
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(sorted(set(special.values())))
    return tok.to_str(pretty=True)


def until_eos(row: np.ndarray, eos: int) -> list[int]:
    row = [int(t) for t in row]
    return row[: row.index(eos) + 1] if eos in row else row


def task_expected(m: PixelLLM, enc: dict, out: dict, context, eos: int, capped: bool, hw, orig_hw) -> dict:
    seq = until_eos(out["text_tokens"][0, 0].numpy(), eos)
    words = seq[1:-1]
    coords = out["point_coords"][0, 0].numpy()                      # (L, 2, 2) px
    vis = m.visual_tokens(enc, None)
    ctx = None if context is None else torch.as_tensor(np.asarray(context)[None, None])
    tf = m.teacher_forced(enc, vis, out["text_tokens"], ctx)
    logits = tf["text_logits"][0, 0].clone()                       # (L, V)
    logprobs = []
    for p in range(1, len(seq)):
        row = logits[p - 1].clone()
        if capped:
            row[seq[p - 1]] = torch.minimum(row[seq[p - 1]], torch.tensor(REPEAT_LOGIT))
        logprobs.append(float(torch.log_softmax(row, -1)[seq[p]]))
    mask_logits = out["detection_masks"][0, 0].numpy()
    mask, near = postprocess_mask(mask_logits, hw, m.image_size[0], orig_hw)
    res = {
        "tokens": words, "sequence": seq, "logprobs": logprobs[: len(words)],
        "eos_logprob": logprobs[len(words)] if len(logprobs) > len(words) else None,
        "corners": coords[1: 1 + len(words)].reshape(len(words), 4).tolist(),
        "box": out["detection_boxes"][0, 0].numpy().tolist(),
        "mask_logits": mask_logits.reshape(-1).tolist(), "mask_size": list(mask_logits.shape),
        "iou": float(out["iou_predictions"][0, 0]),
        "mask_tokens": [int(t) for t in out["text_tokens"][0, 0].numpy()],
        "mask_b64": base64.b64encode(mask.astype(np.uint8).tobytes()).decode(),
        "mask_fraction_near_zero": near,
    }
    if "log_probs" in out:
        res["score"] = float(out["log_probs"][0, 0])
    else:   # teacher-forced: the mean log-prob of the words and the EOS (native decoding's refer score)
        res["score"] = float(np.mean(logprobs))
    return res


def write_case(name: str, out_root: Path) -> None:
    g = load_golden(name)
    cfg, tensors = from_golden(name)
    x = g.inputs
    pm = x["padding_mask"][0]
    h, w = int(pm.max(axis=1).sum()), int(pm.max(axis=0).sum())
    size = int(cfg["image_size"])
    if resized_hw(h, w, size) != (h, w):
        raise AssertionError(f"{name}: resized_hw({h}, {w}) is not the identity")
    rgb = np.clip(np.round(x["images"][0, :h, :w]), 0, 255).astype(np.uint8)
    canvas = np.zeros((1, size, size, 3), np.float32)
    canvas[0, :h, :w] = rgb
    eos, bos = int(cfg["eos_token_id"]), int(cfg["bos_token_id"])
    context = until_eos(x["context_tokens"][0, 0], eos)
    text = until_eos(x["text_tokens"][0, 0], eos)
    expr_ids = text[1:-1]
    if context[:2] != [311, 77] or context[2:-1] != expr_ids:
        raise AssertionError(f"{name}: unexpected golden context {context} for text {text}")
    words = {"where": 311, "is": 77}

    out = out_root / name
    write_model_dir(out, cfg, tensors, make_tokenizer(cfg, words))
    (out / "image.rgb").write_bytes(rgb.tobytes())

    torch.set_num_threads(1)
    m = PixelLLM.from_tensors(cfg, tensors)
    with torch.no_grad():
        images, mask = torch.from_numpy(canvas), torch.from_numpy(x["padding_mask"])
        enc = m.encode(images, mask)
        cap = m.inference(images, mask, None, enc=enc)
        ctx_t = torch.as_tensor(np.asarray(x["context_tokens"]))
        ref = m.inference(images, mask, None, context_tokens=ctx_t, text_tokens=torch.as_tensor(x["text_tokens"]),
                          with_cap=False, enc=enc)
        exp = {
            "case": name, "text_decoder": cfg["text_decoder"], "width": w, "height": h, "image": "image.rgb",
            "expression": " ".join(f"t{i}" for i in expr_ids), "context_tokens": context, "text_tokens": text,
            "caption": task_expected(m, enc, cap, None, eos, True, (h, w), (h, w)),
            "refer": task_expected(m, enc, ref, x["context_tokens"][0, 0], eos, False, (h, w), (h, w)),
            "official": {"caption_tokens": until_eos(g.outputs["cap_text_tokens"][0, 0], eos)},
        }
    (out / "expected.json").write_text(json.dumps(exp) + "\n")
    same = exp["caption"]["sequence"] == exp["official"]["caption_tokens"]
    print(f"{name}: {w}x{h}, caption {len(exp['caption']['tokens'])} words (official tokens "
          f"{'identical' if same else 'differ (8-bit image)'}), refer box {np.round(exp['refer']['box'], 2).tolist()}")


SLOW_VOCAB = 100_000


def write_slow_model(out_root: Path) -> None:
    """build/golden/slow_bert: see the module docstring."""
    src = out_root / "bert_s1_h300"
    cfg, tensors = from_golden("bert_s1_h300")
    rng = np.random.default_rng(0)
    for name in ("git_decoder.embeddings.word_embeddings.weight", "git_decoder.output.weight",
                 "git_decoder.output.bias"):
        old = tensors[name]
        new = (rng.standard_normal((SLOW_VOCAB,) + old.shape[1:]) * 0.02).astype(np.float32)
        new[: old.shape[0]] = old
        tensors[name] = new
    cfg["vocab_size"] = cfg["git_decoder"]["vocab_size"] = SLOW_VOCAB
    cfg["max_caption_length"] = cfg["git_decoder"]["max_positions"]
    out = out_root / "slow_bert"
    write_model_dir(out, cfg, tensors, (src / "tokenizer.json").read_text())
    (out / "image.rgb").write_bytes((src / "image.rgb").read_bytes())
    exp = json.loads((src / "expected.json").read_text())
    (out / "expected.json").write_text(json.dumps({"case": "slow_bert", "width": exp["width"],
                                                   "height": exp["height"], "image": "image.rgb"}) + "\n")
    print(f"slow_bert: vocab {SLOW_VOCAB}, max_caption_length {cfg['max_caption_length']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "golden"))
    ap.add_argument("--cases", default=",".join(GOLDEN_CASES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cases = args.cases.split(",")
    for name in cases:
        write_case(name, Path(args.out))
    if "bert_s1_h300" in cases:
        write_slow_model(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
