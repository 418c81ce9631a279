"""train.py pieces for training on another machine: the wall-clock schedule, several data processes, weight shards
(small files that travel) and warm starts from a shipped model directory or from shards."""
import json

import numpy as np
import pytest
import torch

from pixelllm_ref import configs, data, train
from test_train import TC, tiny_cfg


def test_time_schedule_follows_the_wall_budget(tmp_path):
    tc = train.TrainConfig(lr=1e-3, warmup=10, steps=10 ** 9, minutes=2.0, min_lr_ratio=0.1, schedule="time")
    assert train.lr_at(tc, 0, 0.0) == pytest.approx(1e-4)                 # warmup still counts steps
    assert train.lr_at(tc, 50, 0.0) == pytest.approx(1e-3)
    assert train.lr_at(tc, 50, 60.0) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert train.lr_at(tc, 50, 120.0) == pytest.approx(1e-4)
    assert train.lr_at(tc, 50, 999.0) == pytest.approx(1e-4)
    tc.pred_box_ramp = (0.25, 0.75)
    assert train.pred_box_prob(tc, 10 ** 6, 30.0) == 0.0                   # steps do not move a time schedule
    assert train.pred_box_prob(tc, 0, 60.0) == pytest.approx(tc.pred_box_prob * 0.5)
    with pytest.raises(ValueError, match="schedule"):
        train.train(tmp_path / "r", train.TrainConfig(**{**TC, "schedule": "epochs"}), resume=False, cfg=tiny_cfg())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        train.train(tmp_path / "r", train.TrainConfig(**{**TC, "device": "cuda"}), resume=False, cfg=tiny_cfg())


def test_several_data_workers_deliver_the_in_process_batches_in_order():
    tc0 = train.TrainConfig(**TC)
    tc2 = train.TrainConfig(**{**TC, "workers": 2})
    dc = data.DataConfig.for_model(tiny_cfg())
    pre = train.Prefetcher(tc2, dc, 3, 7)
    try:
        for step in range(3, 7):
            got, want = pre.get(step), train.make_step_batch(tc0, dc, step)
            assert set(got) == set(want)
            for k in want:
                np.testing.assert_array_equal(got[k], want[k])
    finally:
        pre.close()
    assert all(not p.is_alive() for p in pre.procs)


def test_weight_shards_round_trip_and_warm_start(tmp_path):
    cfg = tiny_cfg()
    tc = train.TrainConfig(**TC)
    train.train(tmp_path / "a", tc, resume=False, cfg=cfg)
    ck = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    paths = train.save_weight_shards(tmp_path / "a" / "ckpt.pt", tmp_path / "sh", max_bytes=4 << 20)
    assert len(paths) > 1 and all(p.stat().st_size <= (4 << 20) + 65536 for p in paths)
    state, got_cfg, step = train.load_weights(tmp_path / "sh")
    assert got_cfg == cfg and step == 3 and set(state) == set(ck["model"])
    assert all(torch.equal(state[k], ck["model"][k]) for k in state)        # float32, exact
    with pytest.raises(ValueError, match="exceeds the shard size"):
        train.save_weight_shards(tmp_path / "a" / "ckpt.pt", tmp_path / "tiny", max_bytes=1024)
    # a model directory exported from the shards equals one exported from the checkpoint
    a = train.export_model_dir(tmp_path / "a" / "ckpt.pt", tmp_path / "m1")
    b = train.export_model_dir(tmp_path / "sh", tmp_path / "m2")
    from safetensors.torch import load_file
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
    # inference-only shards (what gpu_train.sh brings back): the training-only modules left out, the rest exact
    lean = train.save_weight_shards(tmp_path / "a" / "ckpt.pt", tmp_path / "lean", inference_only=True)
    state, _, _ = train.load_weights(tmp_path / "lean")
    want = train.inference_state(ck["model"])
    assert len(want) < len(ck["model"]) and set(state) == set(want)
    assert all(torch.equal(state[k], want[k]) for k in state) and sum(p.stat().st_size for p in lean) < sum(
        p.stat().st_size for p in paths)
    # warm starts: from the shards (exact) and from the float16 model directory (its values, training modules fresh)
    for src, exact in ((tmp_path / "sh", True), (a, False)):
        run = tmp_path / f"warm_{exact}"
        train.train(run, train.TrainConfig(**{**TC, "steps": 1, "lr": 0.0, "warmup": 1}), resume=False, cfg=cfg,
                    init_from=src)
        w = torch.load(run / "ckpt.pt", weights_only=False)["model"]
        for k, v in train.inference_state(ck["model"]).items():
            want = v if exact else v.half().float()
            assert torch.equal(w[k], want), k
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        train.load_weights(tmp_path)


def test_resume_takes_device_and_workers_from_the_command(tmp_path):
    cfg = tiny_cfg()
    train.train(tmp_path / "a", train.TrainConfig(**{**TC, "steps": 2}), resume=False, cfg=cfg, stop_at=1)
    ck = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    ck["train_config"]["device"] = "cuda"          # as if made on a GPU machine
    torch.save(ck, tmp_path / "a" / "ckpt.pt")
    train.train(tmp_path / "a", train.TrainConfig(**{**TC, "steps": 2}), resume=True)   # continues on the CPU
    assert torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["step"] == 2


def test_data_workers_exit_when_the_trainer_dies(tmp_path):
    """A trainer killed without closing its Prefetcher leaves no data process behind (each notices the new parent
    within its 5 s put timeout and exits without waiting to flush batches nobody reads)."""
    import os
    import subprocess
    import sys
    import time

    code = ("import os, sys; sys.path.insert(0, 'tests'); from test_train import TC, tiny_cfg;"
            "from pixelllm_ref import data, train;"
            "pre = train.Prefetcher(train.TrainConfig(**{**TC, 'workers': 2}), data.DataConfig.for_model(tiny_cfg()), 0, 50);"
            "pre.get(0); print(' '.join(str(p.pid) for p in pre.procs), flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    deadline = time.time() + 30
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]]
    assert not alive, f"data workers still running: {alive}"


def test_warm_start_may_change_the_fused_grid_and_nothing_else(tmp_path):
    """The fused grid (feature_fusion.output_size + the proposal grid on it) holds no tensor, so a warm start may move
    it (8 -> 14 in session 10) and takes every tensor over; any other config change is refused."""
    cfg = tiny_cfg()
    train.train(tmp_path / "a", train.TrainConfig(**TC), resume=False, cfg=cfg)
    src = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["model"]
    g14 = json.loads(json.dumps(cfg))
    g14["feature_fusion"]["output_size"], g14["proposal_head"]["grid_size"], g14["proposal_head"]["stride"] = 14, 14, 16
    assert g14 != cfg and train.regrid_free(g14) == train.regrid_free(cfg)
    run = tmp_path / "g14"
    train.train(run, train.TrainConfig(**{**TC, "steps": 1, "lr": 0.0, "warmup": 1}), resume=False,
                cfg=g14, init_from=tmp_path / "a" / "ckpt.pt")
    ck = torch.load(run / "ckpt.pt", weights_only=False)
    assert ck["model_config"] == g14
    for k, v in train.inference_state(src).items():
        assert torch.equal(ck["model"][k], v), k
    wider = json.loads(json.dumps(g14))
    wider["git_decoder"]["num_layers"] += 1
    with pytest.raises(ValueError, match="beyond the fused grid"):
        train.train(tmp_path / "bad", train.TrainConfig(**TC), resume=False, cfg=wider, init_from=tmp_path / "a" / "ckpt.pt")


def test_warm_start_without_a_config_keeps_the_architecture_of_its_weights(tmp_path):
    """Without --config a warm start (a later stage of the same model) keeps its weights' config, so it cannot move
    the fused grid back to engines/configs/demo.json's unasked."""
    g = configs.with_fused_grid(tiny_cfg(), 14)
    train.train(tmp_path / "a", train.TrainConfig(**{**TC, "steps": 1}), resume=False, cfg=g)
    train.train(tmp_path / "b", train.TrainConfig(**{**TC, "steps": 1}), resume=False, init_from=tmp_path / "a" / "ckpt.pt")
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["model_config"] == g
