"""Prompt encoder + prompt adapter against the official golden visual tokens.

Input: the official backbone outputs (`out_git_visual_features`, `out_sam_visual_features`), fused by our
feature_fusion (official `utils.concat_visual_features`: SAM 24->27 bicubic, channel concat), and `input_prompt_boxes`.
Output: `out_tf_visual_features` (B, P, 32, D) (for T5 after the visual projection).
"""
import numpy as np
import pytest
import torch

from pixelllm_ref import config as config_lib
from pixelllm_ref import feature_fusion, prompt_adapter, prompt_encoder
from pixelllm_ref.convert import OfficialParams
from pixelllm_ref.golden import rel_l2


def _fuse(golden, git, sam):
    cfg = {feature_fusion.NAME: feature_fusion.config_from_official(golden.official_config)}
    return feature_fusion.FeatureFusion(cfg)(eva02_encoder=git, sam_image_encoder=sam)


def _build(golden):
    params = OfficialParams(golden.params)
    cfg = config_lib.from_official(golden.official_config)
    mods = (prompt_encoder, prompt_adapter)
    for m in mods:
        cfg[m.NAME] = m.config_from_official(golden.official_config)
    out = []
    for m, cls in ((prompt_encoder, prompt_encoder.PromptEncoder), (prompt_adapter, prompt_adapter.PromptAdapter)):
        tensors = m.convert_official(params, cfg)
        mod = cls(cfg)
        sd = {k[len(m.NAME) + 1:]: torch.from_numpy(v) for k, v in tensors.items()}
        mod.load_state_dict(sd, strict=True)
        out.append(mod.eval())
    left = [k for k in params.unused() if k.startswith(("prompt_encoder/", "prompt_adapter/", "visual_project_layers/"))]
    assert not left, left
    return cfg, out[0], out[1]


def test_visual_tokens_match_official(golden):
    cfg, pe, pa = _build(golden)
    git = torch.from_numpy(golden.outputs["git_visual_features"])
    sam = torch.from_numpy(golden.outputs["sam_visual_features"])
    boxes = torch.from_numpy(golden.inputs["prompt_boxes"])
    size = golden.inputs["images"].shape[1:3]
    with torch.no_grad():
        tokens = prompt_adapter.visual_tokens(pe, pa, _fuse(golden, git, sam), boxes, size)
    want = golden.outputs["tf_visual_features"]
    assert tokens.shape == want.shape
    assert rel_l2(tokens.numpy(), want) < 1e-4


def test_invalid_box_falls_back_to_points(golden):
    """An all-zero box selects the point-prompt tokens (4 grid corners + 1 padding point), as the official jnp.where."""
    cfg, pe, _ = _build(golden)
    boxes = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, 20.0, 200.0, 100.0]]])
    with torch.no_grad():
        sparse = pe.sparse_for_adapter(boxes, (384, 384))
        pts = pe.embed_points(torch.zeros(1, 1, 4, 2), torch.ones(1, 1, 4, dtype=torch.long), (384, 384))
        box = pe.embed_boxes(boxes[:, 1:], (384, 384))
    assert sparse.shape == (1, 2, 5, cfg["prompt_encoder"]["embed_dim"])
    torch.testing.assert_close(sparse[:, :1], pts)
    torch.testing.assert_close(sparse[:, 1:, :2], box)
    torch.testing.assert_close(sparse[0, 1, 2:], pe.no_mask_embed.weight.expand(3, -1))


def test_dense_pe_is_cell_centres(golden):
    _, pe, _ = _build(golden)
    with torch.no_grad():
        dense = pe.get_dense_pe(3, 5)
        direct = pe.shared_embedding(torch.tensor([[(j + 0.5) / 5, (i + 0.5) / 3] for i in range(3) for j in range(5)]))
    np.testing.assert_allclose(dense.reshape(15, -1).numpy(), direct.numpy(), rtol=0, atol=1e-6)
