"""pixelllm_ref.jax_resize against outputs of the real jax.image.resize.

tests/data/jax_resize_golden.npz was made with jax/jaxlib 0.10.2 (CPU, float32) by the script stored inside it
(key "note"; run it in a scratch venv with jax: `python make_jax_resize_golden.py OUT.npz`). Each case holds the
input `<case>/x`, jax's output `<case>/y`, the method and the antialias flag.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelllm_ref import jax_resize

DATA = np.load(Path(__file__).parent / "data" / "jax_resize_golden.npz")
CASES = sorted({k.split("/")[0] for k in DATA.files if "/" in k})
WEIGHTS = sorted(k for k in DATA.files if k.startswith("weights_"))


def _case(name):
    return (DATA[f"{name}/x"], DATA[f"{name}/y"], str(DATA[f"{name}/method"]), bool(DATA[f"{name}/antialias"]))


def test_cases_present():
    for needed in ("eva_pos_16_27", "sam_pos_64_24", "sam_feat_24_27", "relpos_127_47"):
        assert needed in CASES


@pytest.mark.parametrize("name", CASES)
def test_numpy_matches_jax(name):
    x, y, method, aa = _case(name)
    out = jax_resize.resize_np(x, y.shape, method, antialias=aa)
    assert out.shape == y.shape
    np.testing.assert_allclose(out, y, rtol=0, atol=5e-6 * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("name", CASES)
def test_torch_matches_jax(name):
    x, y, method, aa = _case(name)
    out = jax_resize.resize_torch(torch.from_numpy(x), y.shape, method, antialias=aa)
    assert out.dtype == torch.float32 and tuple(out.shape) == y.shape
    np.testing.assert_allclose(out.numpy(), y, rtol=0, atol=5e-6 * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("name", CASES)
def test_float64_arithmetic_close_to_jax(name):
    x, y, method, aa = _case(name)
    out = jax_resize.resize_np(x, y.shape, method, antialias=aa, arithmetic="float64")
    np.testing.assert_allclose(out, y, rtol=0, atol=5e-5 * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("key", WEIGHTS)
def test_weight_matrix_matches_jax_matrix(key):
    _, m, n, method = key.split("_")
    w = jax_resize.weight_matrix(int(m), int(n), method)
    assert w.shape == DATA[key].shape
    np.testing.assert_allclose(w, DATA[key], rtol=0, atol=1e-6)


def test_weight_rows_sum_to_one_and_identity():
    for m, n, method in ((16, 27, "bicubic"), (64, 24, "bicubic"), (127, 47, "linear"), (3, 10, "linear")):
        w = jax_resize.weight_matrix(m, n, method)
        assert w.shape == (n, m)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(jax_resize.weight_matrix(9, 9, "bicubic"), np.eye(9))


def test_rejects_unknown_method():
    with pytest.raises(ValueError, match="unsupported method"):
        jax_resize.weight_matrix(4, 5, "lanczos3")
