"""engines/configs/*.json: up to date, and their parameter counts agree three ways:
the official parameter listings (params_*.txt), an analytic count from the official module shapes
(configs.official_param_count / converted_param_count), and the reference modules built on the meta device."""
import importlib
import json
import re
from pathlib import Path

import pytest
import torch

from pixelllm_ref import configs, convert, tokenizer
from pixelllm_ref.golden import golden_dir, load_golden

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
NAMES = ("official-bert", "official-t5", "demo", "tiny-git", "tiny-t5")


def _listing_totals(head):
    last = (golden_dir() / f"params_{head}.txt").read_text().splitlines()[-1]
    m = re.match(r"# (\d+) tensors, (\d+) parameters", last)
    assert m, last
    return int(m.group(1)), int(m.group(2))


def _reference_count(cfg, official):
    """state_dict tensors/elements of the reference model built on the meta device (PixelLLM when model.py has it,
    else the sum of the components the converter fills)."""
    try:
        model_cls = importlib.import_module("pixelllm_ref.model").PixelLLM
    except (ImportError, AttributeError):
        model_cls = None
    with torch.device("meta"):
        if model_cls is not None:
            sds = [model_cls(cfg).state_dict()]
        else:
            sds = []
            for name in convert._component_names(official):
                mod = importlib.import_module(f"pixelllm_ref.{name}")
                sds.append(getattr(mod, "".join(w.capitalize() for w in name.split("_")))(cfg).state_dict())
    return sum(len(sd) for sd in sds), sum(v.numel() for sd in sds for v in sd.values())


@pytest.mark.parametrize("head", ["bert", "t5"])
def test_analytic_count_reproduces_the_official_listing(head):
    off = configs.tiny_official(head)
    assert configs.official_param_count(off) == _listing_totals(head)  # bert: 435 tensors, 7734660 parameters


@pytest.mark.parametrize("head", ["bert", "t5"])
def test_converter_output_matches_the_analytic_count(head):
    g = load_golden(f"{head}_s0_h384")
    _, tensors = convert.convert(g.params, g.official_config)
    got = (len(tensors), sum(v.size for v in tensors.values()))
    assert got == configs.converted_param_count(g.official_config)


@pytest.mark.parametrize("name", NAMES)
def test_reference_model_on_meta_matches_the_analytic_count(name):
    off = configs.official_configs()[name]
    cfg = configs.our_config(off)
    assert _reference_count(cfg, off) == configs.converted_param_count(off)


def test_released_sizes():
    assert configs.official_param_count(configs.OFFICIAL_BERT) == (1553, 1084081766)
    assert configs.converted_param_count(configs.OFFICIAL_BERT) == (1553, 1080009318)
    assert configs.official_param_count(configs.OFFICIAL_T5) == (2297, 3865052716)
    assert configs.converted_param_count(configs.OFFICIAL_T5) == (2009, 3842105900)


@pytest.mark.parametrize("name", NAMES)
def test_checked_in_configs_are_up_to_date(name):
    want = configs.checked_in_config(name)
    assert json.loads((CONFIG_DIR / f"{name}.json").read_text()) == json.loads(json.dumps(want))


def test_demo_config_uses_the_demo_tokenizer():
    cfg = json.loads((CONFIG_DIR / "demo.json").read_text())
    assert cfg["text_decoder"] == "git_decoder"
    assert cfg["vocab_size"] == tokenizer.vocab_size() == cfg["git_decoder"]["vocab_size"]
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (tokenizer.BOS_ID, tokenizer.EOS_ID, 0)
    assert cfg["image_size"] == 224


def test_with_fused_grid_moves_the_fused_grid_and_the_proposal_head_together():
    cfg = configs.checked_in_config("demo")
    g16 = configs.with_fused_grid(cfg, 16)
    assert g16["feature_fusion"]["output_size"] == 16
    assert (g16["proposal_head"]["grid_size"], g16["proposal_head"]["stride"]) == (16, 14)
    assert cfg["feature_fusion"]["output_size"] == configs.DEMO_FUSED_GRID      # the input is not changed
    assert configs.with_fused_grid(g16, configs.DEMO_FUSED_GRID) == cfg
    with pytest.raises(ValueError, match="multiple"):
        configs.with_fused_grid(cfg, 15)
