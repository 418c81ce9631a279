"""Regenerates native/tests/data/jax_resize.safetensors for the C++ resize tests.

Inputs: engines/reference/tests/data/jax_resize_golden.npz (outputs of the real jax.image.resize, made by the
reference) and pixelllm_ref.jax_resize (the reference port, float32 arithmetic). Output tensors:
  case/<name>/x, case/<name>/y   input and jax output of each golden case (metadata "case/<name>" = "method,aa")
  jaxw/<m>_<n>_<method>          jax's own weight matrices from the golden file
  refw/<m>_<n>_<method>_<aa>     pixelllm_ref.jax_resize.weight_matrix (float32 arithmetic), for a bit-exact check
Run: engines/reference/.venv/bin/python native/tests/make_test_data.py
"""
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "engines" / "reference"))
from pixelllm_ref import jax_resize  # noqa: E402

golden = np.load(ROOT / "engines/reference/tests/data/jax_resize_golden.npz")
tensors, meta = {}, {"jax_version": str(golden["jax_version"])}
for name in sorted({k.split("/")[0] for k in golden.files if "/" in k}):
    tensors[f"case/{name}/x"] = np.ascontiguousarray(golden[f"{name}/x"], dtype=np.float32)
    tensors[f"case/{name}/y"] = np.ascontiguousarray(golden[f"{name}/y"], dtype=np.float32)
    meta[f"case/{name}"] = f"{golden[f'{name}/method']},{int(bool(golden[f'{name}/antialias']))}"
for key in golden.files:
    if key.startswith("weights_"):
        _, m, n, method = key.split("_")
        tensors[f"jaxw/{m}_{n}_{method}"] = np.ascontiguousarray(golden[key], dtype=np.float32)
for m, n, method, aa in [(16, 27, "cubic", 1), (64, 24, "cubic", 1), (24, 27, "cubic", 1), (127, 47, "linear", 1),
                         (160, 100, "linear", 1), (100, 160, "cubic", 1), (13, 5, "cubic", 1), (5, 13, "linear", 1),
                         (64, 24, "cubic", 0), (127, 47, "linear", 0), (1, 4, "cubic", 1), (4, 1, "cubic", 1),
                         (200, 3, "linear", 1), (3, 200, "cubic", 1)]:
    w = jax_resize.weight_matrix(m, n, method, antialias=bool(aa))
    tensors[f"refw/{m}_{n}_{method}_{aa}"] = w.astype(np.float32)
out = Path(__file__).parent / "data" / "jax_resize.safetensors"
save_file(tensors, str(out), metadata=meta)
print(f"wrote {out} ({out.stat().st_size} bytes, {len(tensors)} tensors)")
