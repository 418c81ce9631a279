"""train.py (batches, schedule, deterministic resumable training, export) and evaluate.py (metric definitions) on
a tiny architecture built through the demo config path."""
import copy
import functools
import json

import numpy as np
import pytest
import torch

from pixelllm_ref import configs, data, evaluate, scenes, tokenizer, train


@functools.lru_cache(maxsize=1)
def tiny_cfg() -> dict:
    off = copy.deepcopy(configs.demo_official())
    off["git_backbone"].update(embed_dim=32, depth=1, num_heads=2)
    off["sam_backbone"].update(embed_dim=32, depth=1, num_heads=2, window_block_indexes=[])
    off["prompt_adapter"].update(depth=1, transformer_dim=32, output_dim=64)
    off["mask_adapter"].update(depth=1)
    off["text_decoder"].update(hidden_size=64, num_heads=2, num_hidden_layers=1)
    off["point_predictor"].update(hidden_dim=64, depth=2)
    off["box_decoder"].update(channels=32, num_convs=1)
    return configs.our_config(off)


TC = dict(batch_size=2, steps=3, warmup=1, refer_rows=2, region_rows=2, log_every=1, workers=0)


def test_step_batches_are_deterministic_and_use_training_seeds():
    tc = train.TrainConfig(**TC)
    dc = data.DataConfig.for_model(tiny_cfg())
    a, b = train.make_step_batch(tc, dc, 5), train.make_step_batch(tc, dc, 5)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert all(s < train.TRAIN_SEED_LIMIT for step in (0, 7, 10 ** 9) for s in train.step_seeds(tc, step))
    assert a["refer_valid"].all() and a["region_valid"].all()        # scenes have >= 2 objects: 2 valid rows
    assert a["refer_masks"].shape == (2, 2, 224, 224) and a["refer_masks"].any(axis=(2, 3)).all()
    for task in ("trace", "refer", "region"):                        # padding columns trimmed, EOS kept
        assert (a[f"{task}_text"][..., -1] != 0).any()
        assert (a[f"{task}_text"] == tokenizer.EOS_ID).sum() == a[f"{task}_text"].shape[0] * a[f"{task}_text"].shape[1]
    assert a["refer_pv"].sum(-1).tolist() == [[1, 1], [1, 1]]        # '^end-1': the token before EOS only


def test_lr_schedule():
    tc = train.TrainConfig(lr=1e-3, warmup=10, steps=110, min_lr_ratio=0.1)
    assert train.lr_at(tc, 0) == pytest.approx(1e-4)
    assert train.lr_at(tc, 10) == pytest.approx(1e-3)
    assert train.lr_at(tc, 60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert train.lr_at(tc, 110) == pytest.approx(1e-4)


def test_training_resumes_bit_identically_and_exports(tmp_path):
    cfg = tiny_cfg()
    tc = train.TrainConfig(**TC)
    train.train(tmp_path / "a", tc, resume=False, cfg=cfg)
    train.train(tmp_path / "b", tc, resume=False, cfg=cfg, stop_at=1)
    train.train(tmp_path / "b", tc, resume=True)
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 3 and a["examples"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    logs = [json.loads(line) for line in (tmp_path / "a" / "train.log").read_text().splitlines()]
    steps = [r for r in logs if "step" in r and "total" in r]
    assert len(steps) == 3 and {"trace_text", "trace_point", "refer_point", "mask", "region_text", "det",
                                "ex_per_s"} <= set(steps[0])
    out = train.export_model_dir(tmp_path / "a" / "ckpt.pt", tmp_path / "model")
    written = json.loads((out / "config.json").read_text())
    assert written["proposal_head"] == cfg["proposal_head"]
    assert written["task_prompts"] == {"caption": "a long image caption:", "describe": "an object of",
                                       "dense": "an object of"}
    assert (out / "tokenizer.json").read_text() == tokenizer.build_tokenizer_json()
    model = evaluate.load_model(out)
    sd = model.state_dict()
    assert set(sd) == set(train.inference_state(a["model"]))
    assert any(k.startswith("training_probes.") for k in a["model"])      # trained, but never exported
    assert all(torch.equal(sd[k], a["model"][k].half().float()) for k in sd)   # float16 storage
    res = evaluate.evaluate(model, num_scenes=1)
    for k in ("referAcc50", "maskIoU", "pointInObject", "regionCaptionExact", "denseAP50", "proposalAP50"):
        assert 0.0 <= res[k] <= 1.0 or np.isnan(res[k]), (k, res[k])
    assert res["seeds"] == [evaluate.EVAL_SEED_BASE, evaluate.EVAL_SEED_BASE]


def test_average_precision_and_matching():
    assert evaluate.average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert evaluate.average_precision([0.9, 0.8], [False, True], 2) == pytest.approx(0.25)
    assert evaluate.average_precision([0.9, 0.8, 0.7], [True, False, True], 4) == pytest.approx(0.25 + 0.25 * 2 / 3)
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    boxes = [[0, 0, 10, 9], [0, 0, 10, 10], [21, 20, 30, 30]]
    assert evaluate.match_detections(boxes, None, gt, ["a", "b"], False) == [True, False, True]
    assert evaluate.match_detections(boxes, ["x", "a", "b"], gt, ["a", "b"], True) == [False, True, True]


def test_point_in_object_counts_mention_words():
    lay = scenes.make_layout(evaluate.EVAL_SEED_BASE)
    o = lay.objects[0]
    h, w = data.resized_hw(lay.height, lay.width, 224)
    full = evaluate._filled_full_masks(lay, h, w)
    ys, xs = np.nonzero(full[0])
    inside = np.array([[xs[0] + 0.5, ys[0] + 0.5]] * 2)
    outside = np.array([[-5.0, -5.0]] * 2)
    v = tokenizer.vocab()
    toks = [tokenizer.BOS_ID, v["a"], v[o.size], v[o.colour], v[o.shape], v["and"], v[o.colour], v[o.shape],
            tokenizer.EOS_ID]
    pts = np.stack([inside] * 5 + [outside] * 4)
    same = [k for k, p in enumerate(lay.objects) if p.colour == o.colour and p.shape == o.shape]
    named, hits = evaluate.mention_hits(toks, pts, lay, full)
    assert named == 5                         # "size colour shape" + "colour shape"; article and "and" not counted
    assert hits == 3 and same                 # the first mention's 3 words are inside, the second's 2 outside


def test_caption_attributes_and_slot_matching():
    v = tokenizer.vocab()
    toks = np.array([[tokenizer.BOS_ID, v["a"], v["large"], v["blue"], v["ring"], tokenizer.EOS_ID],
                     [0] * 6])
    assert train.caption_attributes(toks).tolist() == [[2, 2, 5], [-1, -1, -1]]  # sizes/colours/shapes order
    torch.manual_seed(0)
    pr = train.Probes(8, 224)
    with torch.no_grad():
        pr.slots.weight.zero_()
        pr.slots.bias.zero_()
    vis = torch.zeros(1, 3, 8)
    boxes = torch.tensor([[[10.0, 10, 50, 50], [100, 100, 150, 150], [0, 0, 0, 0]]])
    attrs = torch.tensor([[[0, 1, 2], [1, 2, 3], [-1, -1, -1]]])
    obj, l1, attr = pr.slot_loss(vis, boxes, attrs, torch.tensor([[True, True, False]]))
    assert obj.item() == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(
        torch.zeros(3), torch.tensor([1.0, 1.0, 0.0]))))                # two slots matched, one background
    assert l1.item() == pytest.approx(float((torch.tensor([112.0] * 4) - boxes[0, :2]).abs().mean()))
    assert attr.item() == pytest.approx((np.log(3) + np.log(6) + np.log(6)) / 3, rel=1e-5)
