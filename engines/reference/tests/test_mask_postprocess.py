"""pixelllm_ref.mask_postprocess: the two ways low-res mask logits become a mask at the original size."""
import numpy as np
import pytest

from pixelllm_ref.mask_postprocess import postprocess_mask, upsample_logits


def square_logits(m: int = 16) -> np.ndarray:
    x = np.full((m, m), -10.0, np.float32)
    x[8:12, 8:12] = 10.0  # input pixels [32, 48) of a 64-pixel padded input
    return x


def centre(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    return float((xs + 0.5).mean())


def test_sam_keeps_the_geometry_and_the_evaluator_stretches_the_truncated_crop():
    # valid 50 of 64 input pixels = 12.5 cells: the evaluator keeps 12 cells and stretches them over 50 pixels
    sam, _ = postprocess_mask(square_logits(), (50, 50), 64, (100, 100), "sam")
    ev, _ = postprocess_mask(square_logits(), (50, 50), 64, (100, 100), "evaluator")
    assert abs(centre(sam) - 80.0) < 0.5  # input pixel 40 x 2
    assert centre(ev) - 80.0 > 2.0


def test_modes_agree_when_the_valid_region_is_whole_cells():
    # 48 of 64 input pixels = 12 cells: no truncation, the same geometry (two bilinear resizes vs one)
    sam, _ = postprocess_mask(square_logits(), (48, 48), 64, (96, 96), "sam")
    ev, _ = postprocess_mask(square_logits(), (48, 48), 64, (96, 96), "evaluator")
    assert abs(centre(sam) - centre(ev)) < 0.1 and abs(centre(sam) - 80.0) < 0.5
    assert (sam & ev).sum() / (sam | ev).sum() > 0.95


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        postprocess_mask(square_logits(), (64, 64), 64, (64, 64), "nearest")
