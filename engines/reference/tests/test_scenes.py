"""Synthetic scenes, the demo tokenizer and the training batches (data.py)."""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pixelllm_ref import data, scenes, tokenizer
from pixelllm_ref.scene_render import render

SEEDS = range(24)


def _digest(scene):
    ann = json.dumps(scenes.annotations(scene), sort_keys=True)
    return hashlib.sha256(scene.image.tobytes() + ann.encode()).hexdigest()


def test_same_seed_same_bytes_different_seed_differs():
    assert _digest(scenes.make_scene(3)) == _digest(scenes.make_scene(3))
    digests = {_digest(scenes.make_scene(s)) for s in range(6)}
    assert len(digests) == 6


def test_scene_ranges():
    kinds, colours, sizes, counts = set(), set(), set(), set()
    for s in SEEDS:
        lay = scenes.make_layout(s)
        assert 200 <= lay.width <= 640 and 200 <= lay.height <= 640
        assert max(lay.width, lay.height) <= 2 * min(lay.width, lay.height)
        assert 2 <= len(lay.objects) <= 6
        counts.add(len(lay.objects))
        for o in lay.objects:
            kinds.add(o.shape), colours.add(o.colour), sizes.add(o.size)
    assert kinds == set(scenes.SHAPES) and colours == set(scenes.COLOURS) and sizes == set(scenes.SIZES)
    assert len(counts) >= 4


def _resolve(expr, lay):
    """Independent reading of an expression: which objects does it denote?"""
    words = expr.split()
    assert words[0] == "the", expr
    pos = None
    for phrase in scenes.POSITIONS:
        if expr.endswith(" " + phrase):
            pos, words = phrase, expr[: -len(phrase) - 1].split()
    cands = [o for o in lay.objects
             if all(w in (o.shape, o.colour, o.size) for w in words[1:]) and o.shape == words[-1]]
    if pos is None:
        return cands
    if len(cands) != 2:
        return cands
    key = (lambda o: o.cx) if pos.split()[-1] in ("left", "right") else (lambda o: o.cy)
    cands = sorted(cands, key=key)
    return [cands[0] if pos.split()[-1] in ("left", "top") else cands[1]]


def test_every_expression_is_unique_in_its_image():
    for s in SEEDS:
        lay = scenes.make_layout(s)
        for o in lay.objects:
            assert o.expression in o.expressions
            for e in o.expressions:
                assert _resolve(e, lay) == [o], (s, e)
            assert o.caption == f"a {o.size} {o.colour} {o.shape}"


def test_masks_inside_tight_boxes_and_occlusion():
    overlaps = 0
    for s in SEEDS:
        sc = scenes.make_scene(s)
        r = sc.rendering
        assert r.image.shape == (sc.layout.height, sc.layout.width, 3) and r.image.dtype == np.uint8
        assert np.all(r.masks <= r.full_masks)
        assert np.all(r.masks.sum(axis=0) <= 1)  # visible parts never overlap
        overlaps += int(np.any(r.full_masks.sum(axis=0) > 1))
        for m, full, b in zip(r.masks, r.full_masks, r.boxes):
            assert m.sum() >= 0.5 * full.sum() > 0
            x0, y0, x1, y1 = b.astype(int)
            inside = np.zeros_like(m)
            inside[y0:y1, x0:x1] = True
            assert not np.any(m & ~inside)
            assert m[y0].any() and m[y1 - 1].any() and m[:, x0].any() and m[:, x1 - 1].any()
    assert overlaps >= 3


def test_rendering_at_another_size_scales_the_geometry():
    lay = scenes.make_layout(5)
    h, w = data.resized_hw(lay.height, lay.width, 384)
    native = render(lay, lay.height, lay.width)
    small = render(lay, h, w)
    scale = np.array([w / lay.width, h / lay.height] * 2)
    assert np.abs(native.boxes * scale - small.boxes).max() <= 2.0
    assert render(lay, h, w).image.tobytes() == small.image.tobytes()


def test_resized_hw_follows_official_rounding():
    assert data.resized_hw(480, 640, 384) == (288, 384)
    assert data.resized_hw(640, 480, 384) == (384, 288)
    assert data.resized_hw(300, 300, 384) == (384, 384)
    assert data.resized_hw(427, 640, 384) == (256, 383)  # official float rounding (correct_rounding_max_size=False)


def test_trace_utterance_boxes_on_a_straight_trace():
    t = np.linspace(0, 10, 101)
    trace = np.stack([t / 10, np.full_like(t, 0.5), t], axis=1)
    c, b = scenes.trace_to_utterance_boxes(trace, np.array([[1.0, 3.0], [5.0, 5.0]]))
    np.testing.assert_allclose(c, [[0.2, 0.5], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(b, [[0.1, 0.5, 0.3, 0.5], [0.5, 0.5, 0.5, 0.5]], atol=1e-6)


def test_trace_token_points_mapping():
    bos, eos = tokenizer.BOS_ID, tokenizer.EOS_ID
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.7], [0.0, 0.0, 1.0, 1.0]], np.float32)
    centres = np.full((3, 2), 0.5, np.float32)
    # 3 utterances at 1/3, 2/3, 1; the official token positions are start + cumsum/N * (end - start) = 5/9, 7/9, 1,
    # so the first word token already takes utterance 1 (the official mapping runs up to one word ahead).
    tok = np.array([bos, 10, 11, 12, eos, 0, 0])
    p = data.trace_token_points(tok, ["a", "b", "c"], centres, boxes, (100, 200))
    assert np.all(p[[0, 4, 5, 6]] == 0)
    np.testing.assert_array_equal(p[1:4].reshape(3, 4), np.round(boxes[[1, 1, 2]] * [200, 100, 200, 100]))
    # an empty utterance is skipped: 2 valid utterances at positions 1/2 and 1 ; 4 tokens at 0.625 .. 1
    tok = np.array([bos, 10, 11, 12, 13, eos])
    p = data.trace_token_points(tok, ["a", " ", "c"], centres, boxes, (10, 10))
    # token positions 0.625, 0.75 (exact tie: the first utterance wins, like tf.argmin), 0.875, 1.0
    np.testing.assert_array_equal(p[1:5, 0, 0], [1, 1, 0, 0])


def test_trace_batch_alignment():
    b = data.make_batch("trace", [4, 11])
    for i in range(2):
        tok, pts, valid = b["text_tokens"][i, 0], b["gt_point_coords"][i, 0], b["point_valid_mask"][i, 0]
        h, w = b["image_hw"][i]
        words = (tok != 0) & (tok != tokenizer.BOS_ID) & (tok != tokenizer.EOS_ID)
        np.testing.assert_array_equal(valid, words)
        assert np.all(pts[~words] == 0) and np.all(pts[words].sum(axis=(1, 2)) > 0)
        assert np.all(pts[..., 0] <= w) and np.all(pts[..., 1] <= h)
        assert np.all(pts[:, 0] <= pts[:, 1])  # corners ordered
        assert tokenizer.decode(tok) == scenes.make_layout(int(b["scene_seeds"][i])).narrative


def test_mentioned_object_words_point_at_that_object():
    """Words of an object mention whose token index equals its utterance index land inside that object's box."""
    hits = total = 0
    for s in range(8):
        ex = data.example(s, "trace")
        lay = scenes.make_layout(s)
        h, w = ex["image_hw"]
        rend = render(lay, h, w)
        tok = ex["text_tokens"][0]
        ids = tokenizer.load().encode(lay.narrative, add_special_tokens=False).tokens
        for k, (word, f) in enumerate(zip(lay.utterances, lay.utt_focus)):
            if f < 0 or word.endswith("."):
                continue
            # find this word's token: the k-th word token counting '.' tokens before it
            tix = 1 + k + sum(1 for u in lay.utterances[:k] if u.endswith("."))
            assert ids[tix - 1] == word
            x0, y0, x1, y1 = rend.boxes[f]
            (px0, py0), (px1, py1) = ex["gt_point_coords"][0, tix]
            cx, cy = (px0 + px1) / 2, (py0 + py1) / 2
            total += 1
            hits += int(x0 - 2 <= cx <= x1 + 2 and y0 - 2 <= cy <= y1 + 2)
        assert tok[0] == tokenizer.BOS_ID
    assert hits / total > 0.8, (hits, total)


@pytest.mark.parametrize("task", ["refer", "region"])
def test_box_task_batches(task):
    b = data.make_batch(task, [1, 4])
    for i in range(2):
        lay = scenes.make_layout(int(b["scene_seeds"][i]))
        n = len(lay.objects)
        h, w = b["image_hw"][i]
        assert b["padding_mask"][i, :h, :w].all() and b["padding_mask"][i].sum() == h * w
        assert np.all(b["images"][i, h:] == 0) and np.all(b["images"][i, :, w:] == 0)
        np.testing.assert_array_equal(b["gt_classes"][i], [1] * n + [0] * (6 - n))
        for p in range(n):
            tok = b["text_tokens"][i, p]
            L = int(np.sum(tok != 0))
            assert tok[0] == tokenizer.BOS_ID and tok[L - 1] == tokenizer.EOS_ID
            assert np.flatnonzero(b["point_valid_mask"][i, p]).tolist() == [L - 2]  # official '^end-1'
            np.testing.assert_array_equal(b["gt_point_coords"][i, p, L - 2].ravel(), b["gt_boxes"][i, p])
            ctx = tokenizer.decode(b["context_tokens"][i, p])
            if task == "refer":
                assert ctx == "where is " + tokenizer.decode(tok)
                m = b["gt_masks"][i, p]
                x0, y0, x1, y1 = b["gt_boxes"][i, p].astype(int)
                assert m.any() and not m[:y0].any() and not m[y1:].any() and not m[:, :x0].any()
                np.testing.assert_array_equal(b["prompt_boxes"][i, p], [0, 0, w, h])
            else:
                assert ctx == "an object of"
                np.testing.assert_array_equal(b["prompt_boxes"][i, p], b["gt_boxes"][i, p])
        assert not b["point_valid_mask"][i, n:].any()
    flags = [int(b[k][0]) for k in ("cap_loss_valid_mask", "proposal_loss_valid_mask", "objcap_loss_valid_mask",
                                    "point_loss_valid_mask")]
    assert flags == ([0, 0, 0, 1] if task == "refer" else [1, 1, 1, 0])


def test_batch_stream_is_deterministic():
    a, b = data.batches(7, 2), data.batches(7, 2)
    for _ in range(2):
        x, y = next(a), next(b)
        assert x["task"] == y["task"]
        np.testing.assert_array_equal(x["images"], y["images"])
    resumed = next(data.batches(7, 2, start_step=1))
    np.testing.assert_array_equal(resumed["scene_seeds"], x["scene_seeds"])


def test_tokenizer_layout_and_round_trip():
    tok = tokenizer.load()
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    texts = []
    for s in range(60):
        lay = scenes.make_layout(s)
        texts += [lay.narrative] + [e for o in lay.objects for e in o.expressions] + [o.caption for o in lay.objects]
    tokenizer.check_round_trip(texts)
    assert tokenizer.build_tokenizer_json() == tokenizer.build_tokenizer_json()
    assert tokenizer.encode_caption("the red circle")[0] == tokenizer.BOS_ID
    assert tokenizer.refer_context("the red circle")[-1] == tokenizer.EOS_ID
    tokenizer.check_round_trip(["the zebra"])  # unknown words fall back to characters, no [UNK]
    with pytest.raises(ValueError):
        tokenizer.check_round_trip(["the Red circle"])  # lower-casing changes the text


def test_tokenizer_json_loads_in_the_npm_package(tmp_path):
    """The same ids and text from @huggingface/tokenizers (node_modules of the repo), when node and it are present."""
    pkg = Path(__file__).resolve().parents[3] / "node_modules" / "@huggingface" / "tokenizers" / "dist" / "tokenizers.mjs"
    if shutil.which("node") is None or not pkg.exists():
        pytest.skip("node or node_modules/@huggingface/tokenizers not installed")
    texts = [scenes.make_layout(s).narrative for s in range(10)] + ["Where is the RED circle?", "the zebra"]
    (tmp_path / "tok.json").write_text(tokenizer.build_tokenizer_json())
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = (f"import {{ Tokenizer }} from {json.dumps(pkg.as_uri())}; import fs from 'fs';"
              f"const t = new Tokenizer(JSON.parse(fs.readFileSync('tok.json','utf8')), {{}});"
              "const out = JSON.parse(fs.readFileSync('texts.json','utf8')).map(s => { const e = t.encode(s);"
              " return [e.ids, t.decode(e.ids, { skip_special_tokens: true })]; });"
              "console.log(JSON.stringify(out));")
    res = subprocess.run(["node", "--input-type=module", "-e", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    assert res.returncode == 0, res.stderr
    tok = tokenizer.load()
    for text, (ids, dec) in zip(texts, json.loads(res.stdout)):
        assert ids == tok.encode(text).ids, text
        assert dec == tok.decode(ids, skip_special_tokens=True)
