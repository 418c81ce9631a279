"""pixelllm_ref.eval_scenes: the evaluation scenes `pixelllm eval` reads are deterministic (byte-identical files
for the same seed and count), disjoint from training seeds and between evaluation seeds, and hold what evaluate.py
scores against (eval_expression = data.example's refer pick, silhouette = the full mask with ring holes filled)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pixelllm_ref import data, eval_scenes as es, scenes, tokenizer

COUNT = 2


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("eval_a"), tmp_path_factory.mktemp("eval_b")
    return es.write_eval_scenes(0, COUNT, a), a, b


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def test_same_seed_same_bytes(written):
    manifest, a, b = written
    again = es.write_eval_scenes(0, COUNT, b)
    assert again == manifest
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert names == ["manifest.json"] + [f"scene_{k:04d}.{ext}" for k in range(COUNT) for ext in ("json", "png")]
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_manifest(written):
    manifest, a, _ = written
    assert json.loads((a / "manifest.json").read_text()) == manifest
    assert manifest["seed"] == 0 and manifest["count"] == COUNT
    assert manifest["generator"] == f"pixelllm_ref.eval_scenes --seed 0 --count {COUNT}"
    assert manifest["prompts"] == {"narrative": scenes.NARRATIVE_PROMPT, "region": scenes.REGION_PROMPT,
                                   "refer_prefix": scenes.REFER_PREFIX}
    assert manifest["vocabulary"] == {"shapes": list(scenes.SHAPES), "colours": list(scenes.COLOURS),
                                      "sizes": list(scenes.SIZES)}
    assert [s["seed"] for s in manifest["scenes"]] == [es.eval_scene_seed(0, k) for k in range(COUNT)]


def test_scene_content(written):
    manifest, a, _ = written
    for entry in manifest["scenes"]:
        ann = json.loads((a / entry["annotations"]).read_text())
        assert ann["seed"] == entry["seed"]
        for key in es.DROPPED_KEYS:
            assert key not in ann
        img = np.asarray(Image.open(a / entry["image"]))
        assert img.shape == (ann["height"], ann["width"], 3) and img.dtype == np.uint8
        sc = scenes.make_scene(entry["seed"])
        assert np.array_equal(img, sc.image)            # the PNG is lossless
        layout = scenes.make_layout(entry["seed"])
        assert [o["eval_expression"] for o in ann["objects"]] == es.refer_expressions(layout)
        assert len(ann["objects"]) == len(layout.objects) > 0
        for o in ann["objects"]:
            assert o["eval_expression"] in o["expressions"]
            vis, sil = _decode(o["mask_rle"]), _decode(o["silhouette_rle"])
            assert sil.shape == vis.shape == (ann["height"], ann["width"])
            assert (vis & ~sil).sum() == 0, "the visible mask lies inside the silhouette"
            assert sil.sum() >= vis.sum() > 0


def test_refer_pick_matches_training_data():
    """eval_expression is what data.example(seed, 'refer') draws for each object (same generator and order)."""
    seed = es.eval_scene_seed(0, 0)
    layout = scenes.make_layout(seed)
    picks = es.refer_expressions(layout)
    ex = data.example(seed, "refer")
    n = len(layout.objects)
    rows = sorted(tuple(int(t) for t in r if t) for r in ex["text_tokens"][:n])
    assert rows == sorted(tuple(tokenizer.encode_caption(e)) for e in picks)


def test_seeds_disjoint_from_training_and_between_eval_seeds():
    assert es.eval_scene_seed(0, 0) == es.EVAL_SEED_BASE >= data.TRAIN_SEEDS_END
    assert es.eval_scene_seed(1, 0) == es.eval_scene_seed(0, es.SEEDS_PER_EVAL_SEED - 1) + 1
    assert len({es.eval_scene_seed(s, k) for s in range(3) for k in range(5)}) == 15


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="count"):
        es.write_eval_scenes(0, 0, tmp_path)
    with pytest.raises(ValueError, match="count"):
        es.write_eval_scenes(0, es.SEEDS_PER_EVAL_SEED + 1, tmp_path)
    with pytest.raises(ValueError):
        es.eval_scene_seed(-1, 0)
    with pytest.raises(ValueError):
        es.eval_scene_seed(0, es.SEEDS_PER_EVAL_SEED)
    assert not any(tmp_path.iterdir()), "nothing written on a refused call"


def test_cli(tmp_path: Path, capsys):
    assert es.main(["--seed", "3", "--count", "1", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["seed"] == 3 and [s["seed"] for s in m["scenes"]] == [es.EVAL_SEED_BASE + 3 * es.SEEDS_PER_EVAL_SEED]
    assert "wrote 1 scenes" in capsys.readouterr().err
