"""bench/make_model.py --check: a cached bench model of an older engines/configs/ architecture is found stale."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _make_model():
    spec = importlib.util.spec_from_file_location("bench_make_model", ROOT / "bench" / "make_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_compares_the_cached_config_with_the_current_one(tmp_path):
    mm = _make_model()
    assert mm.is_current("demo", tmp_path) is False  # nothing written yet
    cfg = mm.bench_config("demo")
    (tmp_path / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    assert mm.is_current("demo", tmp_path) is True
    assert mm.main(["demo", str(tmp_path), "--check"]) == 0
    cfg["feature_fusion"]["output_size"] += 1  # the demo of an older fused grid
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert mm.is_current("demo", tmp_path) is False
    assert mm.main(["demo", str(tmp_path), "--check"]) == 1
    (tmp_path / "config.json").write_text("{ not json")
    assert mm.is_current("demo", tmp_path) is False
