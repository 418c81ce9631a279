"""The mask stage of train.py (`stage="mask"`): only the mask adapter and the mask decoder learn box -> mask; the
frozen rest (encoders, prompt adapter, text decoder, point and proposal heads) stays bit for bit the same."""
import json

import numpy as np
import torch

from pixelllm_ref import data, train
from test_train import TC, tiny_cfg


def test_mask_batch_rows_are_the_scene_objects():
    cfg = tiny_cfg()
    dc = data.DataConfig.for_model(cfg)
    tc = train.TrainConfig(**{**TC, "stage": "mask", "mask_rows": 3})
    b = train.make_mask_batch(tc, dc, 5)
    ref = data.make_batch("refer", train.step_seeds(tc, 5), dc)
    assert b["refer_masks"].shape[:2] == (2, 3) and b["refer_text"].shape[:2] == (2, 3)
    for i in range(2):
        for r in range(3):
            if not b["refer_valid"][i, r]:
                continue
            # each row is one of the image's refer rows: same box, same mask, same expression
            k = [j for j in range(ref["gt_boxes"].shape[1]) if np.array_equal(ref["gt_boxes"][i, j], b["refer_boxes"][i, r])]
            assert k, "row box not among the scene's objects"
            assert np.array_equal(ref["gt_masks"][i, k[0]], b["refer_masks"][i, r])
            lt = b["refer_text"].shape[-1]
            assert np.array_equal(ref["text_tokens"][i, k[0], :lt], b["refer_text"][i, r])
            assert b["refer_masks"][i, r].any()


def test_mask_stage_trains_only_the_mask_side(tmp_path):
    cfg = tiny_cfg()
    full = train.TrainConfig(**{**TC, "steps": 1})
    train.train(tmp_path / "f", full, resume=False, cfg=cfg)
    tc = train.TrainConfig(**{**TC, "steps": 3, "stage": "mask", "mask_rows": 3, "w_probe": 0.0})
    train.train(tmp_path / "m", tc, resume=False, cfg=cfg, init_from=tmp_path / "f" / "ckpt.pt", stop_at=2)
    log = [json.loads(x) for x in (tmp_path / "m" / "train.log").read_text().splitlines()]
    steps = [r for r in log if "step" in r and "mask" in r]
    assert len(steps) == 2 and all(np.isfinite(r["mask"]) and r["mask"] > 0 for r in steps)
    assert not any("trace_text" in r for r in log)
    before = train.inference_state(torch.load(tmp_path / "f" / "ckpt.pt", weights_only=False)["model"])
    after = train.inference_state(torch.load(tmp_path / "m" / "ckpt.pt", weights_only=False)["model"])
    assert before.keys() == after.keys()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(train.MASK_STAGE_MODULES)
    # resuming keeps the same modules frozen (and the stage's losses)
    train.train(tmp_path / "m", train.TrainConfig(**TC), resume=True, cfg=cfg)
    log = [json.loads(x) for x in (tmp_path / "m" / "train.log").read_text().splitlines()]
    assert [r["step"] for r in log if "mask" in r] == [1, 2, 3] and not any("trace_text" in r for r in log)
    again = train.inference_state(torch.load(tmp_path / "m" / "ckpt.pt", weights_only=False)["model"])
    assert {k.split(".")[0] for k in before if not torch.equal(before[k], again[k])} == set(train.MASK_STAGE_MODULES)


def test_mask_stage_with_the_encoder_holds_the_fused_features(tmp_path):
    cfg = tiny_cfg()
    train.train(tmp_path / "f", train.TrainConfig(**{**TC, "steps": 1}), resume=False, cfg=cfg)
    tc = train.TrainConfig(**{**TC, "steps": 2, "stage": "mask", "mask_rows": 3, "w_probe": 0.0,
                              "mask_encoder": True, "w_keep": 10.0})
    train.train(tmp_path / "m", tc, resume=False, cfg=cfg, init_from=tmp_path / "f" / "ckpt.pt")
    log = [json.loads(x) for x in (tmp_path / "m" / "train.log").read_text().splitlines()]
    keep = [r["keep"] for r in log if "keep" in r]
    assert len(keep) == 2 and keep[0] == 0.0 and np.isfinite(keep[1])  # the first step starts at the teacher
    ck = torch.load(tmp_path / "m" / "ckpt.pt", weights_only=False)["model"]
    before = train.inference_state(torch.load(tmp_path / "f" / "ckpt.pt", weights_only=False)["model"])
    after = train.inference_state(ck)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(train.MASK_STAGE_MODULES) | {"sam_image_encoder"}
    # the teacher is the starting encoder, and it is not part of the exported model
    teacher = {k[len("training_teacher_sam."):]: v for k, v in ck.items() if k.startswith("training_teacher_sam.")}
    assert teacher and all(torch.equal(v, before["sam_image_encoder." + k]) for k, v in teacher.items())
    assert not any(k.startswith("training_teacher_sam.") for k in after)
