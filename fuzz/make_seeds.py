"""Writes the small seed corpora for the libFuzzer harnesses (fuzz/corpus/*) and the dictionaries (fuzz/*.dict).

Run with the reference venv:  engines/reference/.venv/bin/python fuzz/make_seeds.py
Seeds are real files made by the `safetensors` library (the format's reference writer), the repository's own
configs (engines/configs/*.json), and masks/RLE strings; each is a few KB at most.
"""
import json
import pathlib

import numpy as np
from safetensors.numpy import save

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"


def write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def safetensors_seeds() -> None:
    d = FUZZ / "corpus" / "safetensors"
    rng = np.random.default_rng(0)
    write(d / "f32_two.safetensors", save({"a.weight": rng.standard_normal((2, 3)).astype(np.float32),
                                           "a.bias": rng.standard_normal(3).astype(np.float32)}))
    write(d / "f16.safetensors", save({"x": rng.standard_normal((4, 2)).astype(np.float16)}))
    write(d / "metadata.safetensors", save({"w": np.arange(6, dtype=np.float32).reshape(1, 2, 3)},
                                           metadata={"format": "pt", "note": "seed"}))
    write(d / "empty_and_scalar.safetensors", save({"e": np.zeros((0, 4), np.float32),
                                                    "s": np.array(1.5, np.float32)}))
    write(d / "empty_file.safetensors", save({}))
    # BF16 is not a numpy dtype: write the header by hand (the format is 8-byte length + JSON + data).
    header = json.dumps({"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    write(d / "bf16.safetensors", len(header).to_bytes(8, "little") + header + bytes(range(8)))


def config_seeds() -> None:
    d = FUZZ / "corpus" / "config"
    keys = set()
    for p in sorted((ROOT / "engines" / "configs").glob("*.json")):
        cfg = json.loads(p.read_text())
        if not p.name.startswith("official"):
            write(d / p.name, json.dumps(cfg, separators=(",", ":")).encode())

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    keys.add(k)
                    walk(v)
        walk(cfg)
    words = sorted(keys) + ["dtype", "shape", "data_offsets", "__metadata__"]
    lines = [f'"\\"{k}\\""' for k in words] + ['"{"', '"}"', '"["', '"]"', '":"', '","', '"true"', '"false"',
                                              '"null"', '"-1"', '"1e308"', '"2147483648"', '"18446744073709551615"']
    (FUZZ / "config.dict").write_text("\n".join(lines) + "\n")
    (FUZZ / "safetensors.dict").write_text("\n".join(
        ['"\\"dtype\\""', '"\\"shape\\""', '"\\"data_offsets\\""', '"\\"__metadata__\\""', '"\\"F32\\""',
         '"\\"F16\\""', '"\\"BF16\\""', '"\\"I64\\""', '"18446744073709551615"', '"9223372036854775807"']) + "\n")


def rle_seeds() -> None:
    d = FUZZ / "corpus" / "rle"
    rng = np.random.default_rng(1)
    mask = (rng.random((12, 9)) > 0.6).astype(np.uint8)
    write(d / "mask_9x12", bytes([0, 8]) + mask.tobytes())
    block = np.zeros((16, 16), np.uint8)
    block[3:9, 4:12] = 1
    write(d / "mask_block", bytes([0, 15]) + block.tobytes())
    write(d / "string_coco", bytes([1]) + b"61X13mN000`0")
    write(d / "string_long", bytes([1]) + b"0P`0f0P`0f0P`0f0P`0f0P`0f0P`0f0P`0f00000000000000000")
    write(d / "counts", bytes([2, 4, 4]) + bytes([3, 0, 5, 0, 8, 0]))


if __name__ == "__main__":
    safetensors_seeds()
    config_seeds()
    rle_seeds()
