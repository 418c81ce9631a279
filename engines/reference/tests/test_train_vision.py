"""The vision stage of train.py (`stage="vision"`): image encoders trained alone on ObjectProbes, and the same probes
as an extra term of full training (`w_objects`)."""
import json

import numpy as np
import pytest
import torch

from pixelllm_ref import data, scenes, train
from test_train import TC, tiny_cfg


def test_vision_batch_masks_and_attributes_match_the_scene():
    cfg = tiny_cfg()
    tc = train.TrainConfig(**{**TC, "stage": "vision"})
    dc = data.DataConfig.for_model(cfg)
    b = train.make_vision_batch(tc, dc, 3)
    assert b["images"].shape == (tc.batch_size, dc.image_size, dc.image_size, 3)
    for i, seed in enumerate(train.step_seeds(tc, 3)):
        lay = scenes.make_layout(seed)
        n = len(lay.objects)
        assert b["object_valid"][i, :n].sum() >= 1 and not b["object_valid"][i, n:].any()
        for k, o in enumerate(lay.objects):
            assert train.ATTRS[2][b["object_attrs"][i, k, 2]] == o.shape
            assert train.ATTRS[1][b["object_attrs"][i, k, 1]] == o.colour
        # the masks sit on pixels of the object's colour (visible part only), never on padding
        assert not (b["object_masks"][i] & (b["padding_mask"][i] == 0)).any()
    # same masks as the refer task renders (matched by box through object_targets)
    full = train.make_step_batch(train.TrainConfig(**{**TC, "w_objects": 1.0}), dc, 3)
    for i in range(tc.batch_size):
        for p in np.flatnonzero(full["object_valid"][i]):
            k = [j for j in range(6) if b["object_valid"][i, j]
                 and (b["object_masks"][i, j] == full["object_masks"][i, p]).all()]
            assert len(k) == 1 and (b["object_attrs"][i, k[0]] == full["object_attrs"][i, p]).all()


def _shape_maps(batch, grid: int) -> torch.Tensor:
    """(B,grid,grid,6) share of each cell covered by each shape, counted pixel by pixel (independently of the
    probes' pooling)."""
    masks, attrs, valid = batch["object_masks"].numpy(), batch["object_attrs"].numpy(), batch["object_valid"].numpy()
    b, p, s, _ = masks.shape
    c = s // grid
    out = np.zeros((b, grid, grid, 6), np.float32)
    for i in range(b):
        for k in np.flatnonzero(valid[i]):
            cover = masks[i, k][: grid * c, : grid * c].reshape(grid, c, grid, c).mean(axis=(1, 3))
            out[i, :, :, attrs[i, k, 2]] += cover
    return torch.from_numpy(out)


def test_object_probes_reward_features_that_encode_the_shape():
    cfg = tiny_cfg()
    probes = train.ObjectProbes(cfg)
    tc = train.TrainConfig(**{**TC, "batch_size": 4, "stage": "vision"})
    batch = data.to_torch(train.make_vision_batch(tc, data.DataConfig.for_model(cfg), 0))
    s = cfg["image_size"]
    enc = {}
    for key, ch, grid in (("features", probes.objects.in_features, 8), ("sam", probes.patch_sam.in_features, s // 16),
                          ("eva02", probes.patch_eva.in_features, s // 16)):
        f = torch.zeros(batch["images"].shape[0], grid, grid, ch)
        f[..., :6] = _shape_maps(batch, grid)
        enc[key] = f
    with torch.no_grad():
        for head in (probes.patch_sam, probes.patch_eva):
            head.weight.zero_()
            head.bias.zero_()
        uniform = probes.losses(enc, batch)
        for head in (probes.patch_sam, probes.patch_eva):
            head.weight[:, :6] = torch.eye(6) * 50.0
        probes.objects.weight.zero_()
        probes.objects.bias.zero_()
        probes.objects.weight[-6:, :6] = torch.eye(6) * 50.0      # the shape logits read the shape channels
        oracle = probes.losses(enc, batch)
    assert abs(float(uniform["patch_shape_sam"]) - np.log(6)) < 1e-5
    assert float(oracle["patch_shape_sam"]) < 0.5 and float(oracle["patch_shape_eva"]) < 0.5
    assert float(oracle["obj_shape_acc"]) > 0.9 and float(oracle["obj_shape"]) < float(uniform["obj_shape"])
    assert all(np.isfinite(float(v)) for v in oracle.values())


def test_vision_stage_trains_only_the_encoders_and_full_training_continues(tmp_path):
    cfg = tiny_cfg()
    tc = train.TrainConfig(**{**TC, "steps": 2, "stage": "vision"})
    train.train(tmp_path / "v", tc, resume=False, cfg=cfg)
    log = [json.loads(x) for x in (tmp_path / "v" / "train.log").read_text().splitlines()]
    steps = [r for r in log if "step" in r and "obj_shape" in r]
    assert steps and all(np.isfinite(r["obj_shape"]) and np.isfinite(r["patch_shape_eva"]) for r in steps)
    ck = torch.load(tmp_path / "v" / "ckpt.pt", weights_only=False)
    torch.manual_seed(tc.seed)
    fresh = train.build_model(cfg)
    train.init_weights(fresh, tc.seed, tc.pos_init)
    init = fresh.state_dict()
    changed = {k.split(".")[0] for k, v in ck["model"].items() if k in init and not torch.equal(v, init[k])}
    assert changed == {"sam_image_encoder", "eva02_encoder"}
    assert not any(k.startswith("training_objects.") for k in train.inference_state(ck["model"]))
    full = train.TrainConfig(**{**TC, "steps": 1, "w_objects": 1.0})
    train.train(tmp_path / "f", full, resume=False, cfg=cfg, init_from=tmp_path / "v" / "ckpt.pt")
    log = [json.loads(x) for x in (tmp_path / "f" / "train.log").read_text().splitlines()]
    assert any("obj_shape" in r and "trace_text" in r for r in log)


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="stage"):
        train.train(tmp_path / "x", train.TrainConfig(**{**TC, "stage": "text"}), resume=False, cfg=tiny_cfg())
