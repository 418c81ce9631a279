"""Training-only signals of train.py for dense visual tokens: sin/cos position init, per-cell probes, attention
guidance, warm start (`--init-from`)."""
import copy
import json

import numpy as np
import pytest
import torch

from pixelllm_ref import data, train
from test_train import TC, tiny_cfg


def dense_cfg(grid: int = 8) -> dict:
    cfg = copy.deepcopy(tiny_cfg())
    cfg["prompt_adapter"]["prompt_fuse_fn"] = "dense"
    cfg["feature_fusion"]["output_size"] = grid
    cfg["proposal_head"].update(grid_size=grid, stride=cfg["image_size"] // grid)
    return cfg


def test_sincos_2d_distinguishes_every_cell_and_has_unit_scale():
    e = train.sincos_2d(8, 32).reshape(64, 32)
    d = torch.cdist(e, e) + torch.eye(64) * 1e9
    assert float(d.min()) > 0.1                       # no two cells share a code
    assert abs(float(e.square().mean()) - 0.5) < 1e-6  # sin^2 + cos^2 pairs: mean square 1/2
    with pytest.raises(ValueError):
        train.sincos_2d(8, 30)


def test_box_cell_coverage_numpy_and_torch_agree_with_exact_areas():
    boxes = np.array([[[0, 0, 28, 28], [14, 14, 42, 28], [0, 0, 224, 224], [10, 20, 10, 30]]], np.float32)
    cov = train.box_cell_coverage(boxes, 224, 8)
    np.testing.assert_allclose(cov.sum(-1)[0], [1.0, 0.5, 64.0, 0.0], atol=1e-6)   # areas in cells
    assert cov[0, 0, 0] == 1.0 and cov[0, 1, 0] == 0.25 and cov[0, 1, 1] == 0.25
    np.testing.assert_allclose(train.box_cells_torch(torch.from_numpy(boxes), 224.0, 8).numpy(), cov, atol=1e-6)


def test_cell_targets_are_distributions_matching_the_masks():
    tc = train.TrainConfig(**TC, w_cells=1.0, cell_grid=8)
    dc = data.DataConfig.for_model(tiny_cfg())
    b = train.make_step_batch(tc, dc, 3)
    for key, n in (("cell_size", 4), ("cell_colour", 7), ("cell_shape", 7)):
        t = b[key]
        assert t.shape == (2, 64, n)
        np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-5)
        assert (t[..., :-1].sum(-1) > 0).any()                          # some cells are covered by objects
    assert b["region_cells"].shape == b["region_boxes"].shape[:2] + (64,)


def test_attention_guidance_is_minimal_when_attention_sits_on_the_box():
    boxes = torch.tensor([[[0.0, 0.0, 56.0, 56.0]]])                   # 4 cells of an 8x8 grid over 224 px
    valid = torch.ones(1, 1, dtype=torch.bool)
    t = train.box_cells_torch(boxes, 224.0, 8)[0, 0]
    def probs(a):                                                       # (1, H=1, S=65, S=65): 64 visual + 1 text
        p = torch.zeros(1, 1, 65, 65)
        p[0, 0, -1, :64] = a
        return [p, p]
    on_box = train.attention_guidance(probs(t / t.sum()), 64, boxes, valid, 224.0)
    uniform = train.attention_guidance(probs(torch.full((64,), 1 / 64)), 64, boxes, valid, 224.0)
    assert float(on_box) < float(uniform) - 2.0
    assert float(train.attention_guidance(probs(t), 64, boxes, torch.zeros(1, 1, dtype=torch.bool), 224.0)) == 0.0


def test_dense_training_with_cells_and_guidance_runs_and_warm_starts(tmp_path):
    cfg = dense_cfg()
    tc = train.TrainConfig(**{**TC, "steps": 2}, w_cells=1.0, w_attn=1.0, w_probe=0.0, probe_only=0,
                           pos_init="sincos")
    train.train(tmp_path / "a", tc, resume=False, cfg=cfg)
    log = [json.loads(x) for x in (tmp_path / "a" / "train.log").read_text().splitlines()]
    steps = [r for r in log if "step" in r and "attn_guide" in r]
    assert steps and all(np.isfinite(r["attn_guide"]) and np.isfinite(r["cell_colour"]) for r in steps)
    ck = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    assert any(k.startswith("training_cells.") for k in ck["model"])
    assert not any(k.startswith("training_cells.") for k in train.inference_state(ck["model"]))
    train.train(tmp_path / "b", train.TrainConfig(**{**TC, "steps": 1}, w_cells=1.0, w_probe=0.0, probe_only=0),
                resume=False, cfg=cfg, init_from=tmp_path / "a" / "ckpt.pt")
    other = copy.deepcopy(cfg)
    other["git_decoder"]["num_layers"] = 2
    with pytest.raises(ValueError, match="model config differs"):
        train.train(tmp_path / "c", train.TrainConfig(**TC), resume=False, cfg=other,
                    init_from=tmp_path / "a" / "ckpt.pt")


def test_cells_need_dense_tokens(tmp_path):
    with pytest.raises(ValueError, match="dense"):
        train.train(tmp_path / "x", train.TrainConfig(**TC, w_cells=1.0), resume=False, cfg=tiny_cfg())


def test_probe_warmup_keeps_fresh_probes_off_the_encoders():
    """For the first probe_warmup steps the cell and object probes learn from detached features: every model
    weight gets the gradient it would get without them; afterwards their gradient reaches the encoders."""
    cfg = dense_cfg()
    base = dict(**{**TC, "batch_size": 2}, w_probe=0.0, probe_only=0, text_ramp=(0, 0), cell_grid=8)
    tc_probes = train.TrainConfig(**base, w_cells=1.0, w_objects=0.5, probe_warmup=3)
    dc = data.DataConfig.for_model(cfg)
    batch = data.to_torch(train.make_step_batch(tc_probes, dc, 0), torch.device("cpu"))
    torch.manual_seed(0)
    model = train.build_model(cfg)
    train.init_weights(model, 0, "sincos")
    train.add_training_modules(model, tc_probes)

    def grads(tc, step):
        model.zero_grad(set_to_none=True)
        train.step_losses(model, batch, tc, step)[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    without = grads(train.TrainConfig(**base), 0)
    held, after = grads(tc_probes, 0), grads(tc_probes, 3)
    enc = [n for n in without if n.startswith(("sam_image_encoder.", "eva02_encoder."))]
    assert enc and all(torch.allclose(held[n], without[n], rtol=1e-5, atol=1e-7) for n in without)
    assert any(not torch.allclose(after[n], without[n], rtol=1e-3, atol=1e-6) for n in enc)
    for probes in ("training_cells.", "training_objects."):
        assert any(n.startswith(probes) and g.abs().sum() > 0 for n, g in held.items()), probes


def test_probe_lr_mult_gives_the_training_only_modules_their_own_rate(tmp_path):
    cfg = dense_cfg()
    tc = train.TrainConfig(**TC, w_probe=0.0, probe_only=0, w_cells=1.0, w_objects=0.5, probe_lr_mult=30.0)
    model = train.build_model(cfg)
    train.add_training_modules(model, tc)
    opt = train.make_optimizer(model, tc)
    want = {id(p) for n, p in model.named_parameters() if n.startswith(train.TRAINING_ONLY) and p.requires_grad}
    assert len(opt.param_groups) == 3 and opt.param_groups[2]["lr_mult"] == 30.0
    assert {id(p) for p in opt.param_groups[2]["params"]} == want and want
    assert not want & {id(p) for g in opt.param_groups[:2] for p in g["params"]}
    # the default keeps two groups (checkpoints of earlier runs resume), and a run trains with the third
    assert len(train.make_optimizer(model, train.TrainConfig(**TC)).param_groups) == 2
    train.train(tmp_path / "a", tc, resume=False, cfg=cfg)
    train.train(tmp_path / "a", tc, resume=True, cfg=cfg)
