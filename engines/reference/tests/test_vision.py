"""Image side of the reference against the official golden outputs (all four cases).

Weights go through each module's `convert_official`; inputs are the golden images + padding mask (0..255, NHWC);
outputs must match `out_git_visual_features` (EVA02) and `out_sam_visual_features` (SAM neck) to rel L2 <= 1e-4.
"""
import numpy as np
import pytest
import torch

from pixelllm_ref import eva02_encoder, feature_fusion, sam_image_encoder
from pixelllm_ref.convert import ConversionError, OfficialParams
from pixelllm_ref.golden import rel_l2

from conftest import _golden  # cached golden loader shared with the `golden` fixture

TOL = 1e-4


def _build(mod, cls, golden, params=None):
    cfg = {mod.NAME: mod.config_from_official(golden.official_config)}
    params = params or OfficialParams(golden.params)
    tensors = mod.convert_official(params, cfg)
    assert all(k.startswith(mod.NAME + ".") for k in tensors)
    model = cls(cfg).eval()
    model.load_state_dict({k[len(mod.NAME) + 1:]: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return model, params


def _inputs(golden):
    return torch.from_numpy(golden.inputs["images"]), torch.from_numpy(golden.inputs["padding_mask"])


def test_sam_image_encoder_matches_official(golden):
    model, params = _build(sam_image_encoder, sam_image_encoder.SamImageEncoder, golden)
    left = [k for k in params.unused() if k.startswith("sam_backbone/")]
    assert left == [], f"official SAM parameters not consumed: {left}"
    with torch.no_grad():
        out = model(*_inputs(golden)).numpy()
    ref = golden.outputs["sam_visual_features"]
    err = rel_l2(out, ref)
    print(f"{golden.name} sam rel_l2={err:.3e}")
    assert err <= TOL, err


def test_eva02_encoder_matches_official(golden):
    model, params = _build(eva02_encoder, eva02_encoder.Eva02Encoder, golden)
    left = [k for k in params.unused() if k.startswith("git_backbone/")]
    assert left == [], f"official EVA02 parameters not consumed: {left}"
    with torch.no_grad():
        out = model(*_inputs(golden)).numpy()
    ref = golden.outputs["git_visual_features"]
    err = rel_l2(out, ref)
    print(f"{golden.name} eva02 rel_l2={err:.3e}")
    assert err <= TOL, err


def test_feature_fusion_shape_and_order(golden):
    cfg = {feature_fusion.NAME: feature_fusion.config_from_official(golden.official_config)}
    assert feature_fusion.convert_official(OfficialParams(golden.params), cfg) == {}
    fusion = feature_fusion.FeatureFusion(cfg)
    assert list(fusion.state_dict()) == []
    eva = torch.from_numpy(golden.outputs["git_visual_features"])
    sam = torch.from_numpy(golden.outputs["sam_visual_features"])
    fused = fusion(eva02_encoder=eva, sam_image_encoder=sam)
    assert tuple(fused.shape) == (1, 27, 27, eva.shape[-1] + 256) == (1, 27, 27, cfg["feature_fusion"]["out_channels"])
    assert torch.equal(fused[..., : eva.shape[-1]], eva)  # EVA02 channels first, unresized
    # SAM part: a smooth upsampling of the 24x24 map; its mean per channel is nearly preserved
    np.testing.assert_allclose(fused[..., eva.shape[-1]:].mean((1, 2)).numpy(), sam.mean((1, 2)).numpy(), atol=0.05)


@pytest.mark.parametrize("mod,missing", [
    (sam_image_encoder, "sam_backbone/blocks.1/attn/rel_pos_h"),
    (sam_image_encoder, "sam_backbone/neck/2/kernel"),
    (eva02_encoder, "git_backbone/blocks.0/attn/q_bias"),
    (eva02_encoder, "git_backbone/pos_embed"),
])
def test_convert_refuses_missing_parameter(mod, missing):
    g = _golden("bert_s0_h384")
    flat = {k: v for k, v in g.params.items() if k != missing}
    cfg = {mod.NAME: mod.config_from_official(g.official_config)}
    with pytest.raises(ConversionError, match="missing"):
        mod.convert_official(OfficialParams(flat), cfg)


def test_config_refuses_unknown_options():
    cfg = dict(_golden("bert_s0_h384").official_config)
    cfg["sam_backbone"] = dict(cfg["sam_backbone"], beit_like_qkv_bias=True)
    with pytest.raises(ConversionError):
        sam_image_encoder.config_from_official(cfg)
    cfg["git_backbone"] = dict(cfg["git_backbone"], some_new_option=1)
    with pytest.raises(ConversionError, match="unknown"):
        eva02_encoder.config_from_official(cfg)


def test_sam_refuses_non_square():
    model, _ = _build(sam_image_encoder, sam_image_encoder.SamImageEncoder, _golden("bert_s0_h384"))
    with pytest.raises(ValueError, match="square"):
        model.forward_normalized(torch.zeros(1, 384, 368, 3))
