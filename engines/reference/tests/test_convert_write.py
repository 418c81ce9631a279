"""convert.write_model_dir / save_safetensors are byte-stable: the same inputs give the same bytes, although the
safetensors writer keeps its metadata in a hash map (random order per map)."""
from __future__ import annotations

import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from pixelllm_ref import convert

META = {f"key{i}": f"value {i}" for i in (5, 3, 0, 4, 1, 2)}  # 6 entries: 720 orders


def _tensors():
    rng = np.random.default_rng(0)
    return {"b.weight": rng.standard_normal((3, 5)).astype(np.float32),
            "a.bias": rng.standard_normal(7).astype(np.float32),
            "c.scale": np.arange(4, dtype=np.float32)}


def _header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8:8 + n]


def test_write_model_dir_is_byte_stable(tmp_path):
    cfg = {"name": "tiny", "sizes": {"d": 8, "a": 2}}
    outs = []
    for i in range(4):
        convert.write_model_dir(tmp_path / f"m{i}", cfg, _tensors(), '{"tok": 1}', metadata=META)
        outs.append({f: (tmp_path / f"m{i}" / f).read_bytes()
                     for f in ("config.json", "model.safetensors", "tokenizer.json")})
    for o in outs[1:]:
        assert o == outs[0]
    head = json.loads(_header(tmp_path / "m0" / "model.safetensors"))
    assert list(head["__metadata__"]) == sorted(META)


def test_default_metadata_sorted_and_content_round_trips(tmp_path):
    convert.write_model_dir(tmp_path / "x", {"a": 1}, _tensors())
    convert.write_model_dir(tmp_path / "y", {"a": 1}, _tensors())
    p = tmp_path / "x" / "model.safetensors"
    assert p.read_bytes() == (tmp_path / "y" / "model.safetensors").read_bytes()
    assert not (tmp_path / "x" / "tokenizer.json").exists()
    assert list(json.loads(_header(p))["__metadata__"]) == sorted(convert.MODEL_METADATA)
    with safe_open(str(p), "np") as f:
        assert f.metadata() == convert.MODEL_METADATA
    back = load_file(str(p))
    assert sorted(back) == sorted(_tensors())
    for k, v in _tensors().items():
        np.testing.assert_array_equal(back[k], v)


def test_save_safetensors_keeps_header_length_and_padding(tmp_path):
    from safetensors.numpy import save_file

    plain, stable = tmp_path / "plain.safetensors", tmp_path / "stable.safetensors"
    save_file(_tensors(), str(plain), metadata=META)
    convert.save_safetensors(_tensors(), stable, metadata=META)
    a, b = plain.read_bytes(), stable.read_bytes()
    n = int.from_bytes(a[:8], "little")
    assert len(a) == len(b) and a[:8] == b[:8] and a[8 + n:] == b[8 + n:]  # only the header text may move
    assert json.loads(_header(stable)) == json.loads(_header(plain))
