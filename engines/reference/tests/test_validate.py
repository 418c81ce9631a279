"""pixelllm_ref.validate: teacher-forced losses on held-out scenes, for comparing checkpoints."""
import torch

from pixelllm_ref import data, train, validate
from test_train import TC, tiny_cfg


def test_validation_losses_are_held_out_deterministic_and_tell_models_apart(tmp_path, monkeypatch):
    cfg = tiny_cfg()
    train.train(tmp_path / "a", train.TrainConfig(**TC), resume=False, cfg=cfg)
    seen = []
    make = train.make_step_batch

    def spy(tc, dc, step, seeds=None):
        seen.extend(seeds)
        return make(tc, dc, step, seeds)

    monkeypatch.setattr(train, "make_step_batch", spy)
    a = validate.validation_losses(tmp_path / "a" / "ckpt.pt", images=4, batch=2)
    assert set(a) == set(validate.TERMS) and all(v == v and abs(v) < 1e6 for v in a.values())
    assert len(seen) == 4 and len(set(seen)) == 4 and min(seen) >= data.TRAIN_SEEDS_END   # never a training scene
    assert validate.validation_losses(tmp_path / "a" / "ckpt.pt", images=4, batch=2) == a
    # another model (the same weights, perturbed) gets other losses on the same scenes
    ck = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    ck["model"] = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ck["model"].items()}
    torch.save(ck, tmp_path / "b.pt")
    assert validate.validation_losses(tmp_path / "b.pt", images=4, batch=2) != a
    assert seen[:4] == seen[4:8] == seen[8:12]
