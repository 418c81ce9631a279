"""The committed fixtures (test/fixtures/reference, scripts/fixtures_committed.py): size budget, the committed model
is exactly the script's seeded model, the stored intermediates are consistent with the reference run on the
committed weights (KV-cache steps = full recompute, beam order, NMS output), and the difference check catches
changes. The full regeneration (~20 s) is CI's `scripts/fixtures.sh --check-committed`, not repeated here."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from pixelllm_ref import data, decoding, tokenizer
from pixelllm_ref import proposal_head as ph
from pixelllm_ref.golden import rel_l2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fixtures_committed as fc  # noqa: E402

DIR = fc.OUT
pytestmark = pytest.mark.skipif(not (DIR / "expected.json").is_file(), reason=f"no {DIR}: run npm run fixtures")


@pytest.fixture(scope="module")
def committed():
    cfg = json.loads((DIR / "model" / "config.json").read_text())
    return cfg, load_file(str(DIR / "model" / "model.safetensors")), load_file(str(DIR / "tensors.safetensors")), \
        json.loads((DIR / "expected.json").read_text())


@pytest.fixture(scope="module")
def model(committed):
    from pixelllm_ref import train

    cfg, weights, _, _ = committed
    m = train.build_model(cfg)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return m.eval()


def test_budget_and_files():
    total = sum(p.stat().st_size for p in DIR.rglob("*") if p.is_file())
    assert total <= 10 * 1024 * 1024, f"{total} bytes > 10 MB"
    assert sorted(str(p.relative_to(DIR)) for p in DIR.rglob("*") if p.is_file()) == sorted(fc.GENERATED + ("README.md",))


def test_committed_model_is_the_seeded_model(committed):
    cfg, weights, _, _ = committed
    want_cfg, want, _ = fc.build()
    assert cfg == json.loads(json.dumps(want_cfg))
    assert weights.keys() == want.keys()
    for k in want:
        assert np.array_equal(weights[k], want[k]), k
    assert (DIR / "model" / "tokenizer.json").read_text() == tokenizer.build_tokenizer_json()


def test_image(committed):
    cfg, _, t, exp = committed
    h, w = exp["height"], exp["width"]
    S = cfg["image_size"]
    assert w == S and h < S and data.resized_hw(h, w, S) == (h, w)   # padded, never resampled: a non-square image
    rgb = np.frombuffer((DIR / "image.rgb").read_bytes(), np.uint8).reshape(h, w, 3)
    assert np.array_equal(t["images"][0, :h, :w], rgb.astype(np.float32))
    assert not t["images"][0, h:].any() and t["padding_mask"][0, :h].all() and not t["padding_mask"][0, h:].any()


@torch.no_grad()
def test_image_side_reproduces(committed, model):
    _, _, t, _ = committed
    enc = model.encode(torch.from_numpy(t["images"]), torch.from_numpy(t["padding_mask"]))
    for ours, key in (("sam", "sam_features"), ("eva02", "eva02_features"), ("features", "fused_features")):
        assert rel_l2(enc[ours].numpy(), t[key]) <= 1e-6, key
    vis = model.visual_tokens(enc, torch.from_numpy(t["prompt_boxes"])[None])
    assert rel_l2(vis[0].numpy(), t["visual_tokens"]) <= 1e-6


def test_kv_cache_steps_equal_full_recompute(committed, model):
    _, _, t, exp = committed
    steps, full, tf = t["caption_step_logits"], t["caption_full_step_logits"], t["caption_tf_logits"]
    assert steps.shape == full.shape and steps.shape[0] == len(exp["caption"]["sequence"]) - 1
    assert rel_l2(steps, full) <= 1e-5
    assert rel_l2(steps, tf[: steps.shape[0]]) <= 1e-5
    # the greedy choice at every step (repeat rule) is the committed token
    seq = exp["caption"]["sequence"]
    for cur in range(1, len(seq)):
        row = torch.from_numpy(steps[cur - 1]).clone()
        row[seq[cur - 1]] = min(float(row[seq[cur - 1]]), decoding.REPEAT_LOGIT)
        assert int(row.argmax()) == seq[cur]
    assert exp["margins"]["caption_logprob_gap"] > 10 * fc.PERTURB


def test_beams(committed):
    _, _, t, exp = committed
    for k in fc.BEAMS:
        scores = t[f"beam{k}_scores"]
        assert scores.shape == (k,) and np.all(np.diff(scores) >= 0), "increasing score order, best last"
        best = [int(v) for v in t[f"beam{k}_tokens"][-1]]
        assert fc.until_eos(best, tokenizer.EOS_ID) == exp[f"beam{k}"]["sequence"]
        assert exp[f"beam{k}"]["score"] == pytest.approx(float(scores[-1]))
        assert t[f"beam{k}_step_logits"].shape[1] == k    # every beam row at every step
    assert any(s == decoding.BEAM_NEG_INF for s in exp["beam3"]["beam_scores"]), "the empty finished slot case"


def test_proposals(committed, model):
    cfg, _, t, _ = committed
    maps = {"heatmap": torch.from_numpy(t["proposal_heatmap"])[None],
            "box_regs": torch.from_numpy(t["proposal_box_regs"])[None]}
    boxes, scores = ph.postprocess(maps, torch.from_numpy(t["valid_hw"])[None], cfg)[0]
    assert np.array_equal(boxes.numpy(), t["proposal_boxes"]) and np.array_equal(scores.numpy(), t["proposal_scores"])
    assert 1 < boxes.shape[0] <= cfg[ph.NAME]["max_detections"]


def test_tasks_present(committed):
    _, _, _, exp = committed
    assert exp["refer"]["context_tokens"] == tokenizer.refer_context(exp["refer"]["expression"])
    assert exp["describe"]["prompt_box"] == fc.DESCRIBE_BOX and exp["segment"]["box"] == fc.SEGMENT_BOX
    assert all(r["items"] for r in exp["dense"]["runs"])
    lengths = {len(exp[k]["tokens"]) for k in ("caption", "describe")}
    assert len(lengths) == 2, "one decode stops at EOS, the other fills the buffer"


def test_compare_detects_differences(tmp_path):
    copy = tmp_path / "ref"
    shutil.copytree(DIR, copy)
    assert fc.compare(copy, DIR, 1e-5) == ([], [])
    e = json.loads((copy / "expected.json").read_text())
    e["caption"]["tokens"][0] += 1
    e["caption"]["score"] *= 1.001
    (copy / "expected.json").write_text(json.dumps(e))
    t = load_file(str(copy / "tensors.safetensors"))
    t["sam_features"] = t["sam_features"] * np.float32(1 + 1e-7)   # within tolerance: reported as changed only
    t["proposal_boxes"] = t["proposal_boxes"] + np.float32(1.0)
    from safetensors.numpy import save_file
    save_file(t, str(copy / "tensors.safetensors"))
    errors, changed = fc.compare(copy, DIR, 1e-5)
    assert changed == ["expected.json", "tensors.safetensors"]
    joined = "\n".join(errors)
    assert "caption.tokens[0]" in joined and "caption.score" in joined and "proposal_boxes" in joined
    assert "sam_features" not in joined
    (copy / "image.rgb").unlink()
    assert any("image.rgb" in e for e in fc.compare(DIR, copy, 1e-5)[0])
