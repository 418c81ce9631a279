"""Flax msgpack checkpoint reader (pixelllm_ref/flax_checkpoint.py) and the converter CLI (convert_cli.py).

tests/data/flax_ckpt_small.msgpack was written by real flax.serialization.to_bytes (see tests/data/make_flax_ckpt_small.py).
"""
import json
from pathlib import Path

import msgpack
import numpy as np
import pytest

from pixelllm_ref.convert import convert
from pixelllm_ref.convert_cli import main as cli_main
from pixelllm_ref.flax_checkpoint import FlaxCheckpointError, read_flax_checkpoint, select_params
from pixelllm_ref.golden import golden_dir, load_golden

CKPT = Path(__file__).parent / "data" / "flax_ckpt_small.msgpack"


def _in_subset(p):
    return p.startswith(("point_predictor/", "prompt_encoder/")) or (
        p.startswith("prompt_adapter/") and "output_hypernetworks_mlps" not in p and "/transformer/" not in p)


def test_reader_matches_golden_bytes():
    g = load_golden("bert_s0_h384")
    flat = read_flax_checkpoint(CKPT)
    want = {k: v for k, v in g.params.items() if _in_subset(k)}
    assert sorted(flat) == sorted(want)
    for k, v in want.items():
        assert flat[k].dtype == v.dtype and flat[k].shape == v.shape, k
        assert flat[k].tobytes() == np.ascontiguousarray(v).tobytes(), k


def test_fixture_has_a_chunked_array():
    raw = msgpack.unpackb(CKPT.read_bytes(), raw=False, strict_map_key=False)
    node = raw["params"]["prompt_adapter"]["image_projection_mlp"]["layers.0"]["kernel"]
    assert node["__msgpack_chunked_array__"] and len(node["chunks"]) >= 2
    assert read_flax_checkpoint(CKPT)["prompt_adapter/image_projection_mlp/layers.0/kernel"].shape == (320, 64)


def test_reader_refuses_truncated_and_garbage():
    data = CKPT.read_bytes()
    for bad in (data[: len(data) // 2], data[:10], b"", b"\xc1\xc1garbage", b"not msgpack at all" * 3, b"\x93\x01\x02\x03"):
        with pytest.raises(ValueError) as e:
            read_flax_checkpoint(bad)
        assert "checkpoint" in str(e.value).lower()
    assert issubclass(FlaxCheckpointError, ValueError)


def test_select_params_layouts():
    a = {"w": np.zeros(2, np.float32)}
    assert select_params({"m": a}) == {"m": a}
    assert select_params({"params": {"m": a}, "opt_state": None, "global_step": 3})["m"] is a
    assert select_params({"params": {"params": {"m": a}}})["m"] is a
    assert select_params({"optimizer": {"target": {"m": a}, "state": {}}})["m"] is a
    for bad in ({"params": {"m": a}, "optimizer": {"target": {"m": a}}},  # two parameter trees
                {"params": {"m": a}, "git_backbone": a},                  # wrapper mixed with modules
                {"params": {"params": {"m": a}, "x": a}},                 # nested params beside other keys
                {"opt_state": {}, "global_step": 1}):                     # no parameters
        with pytest.raises(FlaxCheckpointError):
            select_params(bad)


def test_cli_on_golden_npz_equals_convert(tmp_path):
    from safetensors.numpy import load_file

    g = load_golden("bert_s0_h384")
    cfg, tensors = convert(g.params, g.official_config)
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"dummy": true}')
    out = tmp_path / "model"
    rc = cli_main(["--official-config", str(golden_dir() / "tiny-bert.json"),
                   "--params", str(golden_dir() / "golden_bert_s0_h384.npz"), str(out), "--tokenizer", str(tok)])
    assert rc == 0
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(cfg))
    got = load_file(str(out / "model.safetensors"))
    assert sorted(got) == sorted(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == np.float32 and got[k].tobytes() == np.ascontiguousarray(v, np.float32).tobytes(), k
    assert (out / "tokenizer.json").read_text() == '{"dummy": true}'
