"""Writes a benchmark model directory with seeded random weights (no trained weights needed).

    engines/reference/.venv/bin/python bench/make_model.py NAME OUT_DIR [--onnx]
    engines/reference/.venv/bin/python bench/make_model.py NAME OUT_DIR --check   # exit 0: OUT_DIR is NAME's
                                                                                  # architecture; 1: stale

NAME:
  official-bert-reduced  engines/configs/official-bert.json with the SAME per-layer shapes (SAM ViT-H blocks
                         1280 wide, EVA02-L blocks 1024 wide, the full GIT decoder 6 x 768, vocab 30522, prompt
                         adapter 6 x 512) but fewer image-encoder blocks: SAM 8 of 32 (global attention at block 7,
                         as the official 7/15/23/31 pattern repeats every 8) and EVA02 6 of 24. The full model is
                         ~1.1 B params (4.4 GB fp32, times three runtimes in one benchmark, plus a >2 GB ONNX
                         export) which does not fit the 2-core / 23 GB development machine; every per-layer cost
                         is the official one, the image-encoder totals scale by 1/4.
  official-bert          the full official architecture (use on a large machine).
  demo                   engines/configs/demo.json (the demo architecture; random until engines/demo/ lands).
  tiny-git               engines/configs/tiny-git.json (for bench:smoke).
The weights come from the reference model (pixelllm_ref.model.PixelLLM) built with torch.manual_seed(0), then every
tensor gets N(0, 0.02) noise so that the constant-initialised ones (position tables, biases) are exercised too.
--onnx also runs pixelllm_ref.export_onnx for the graphs the benchmark uses (image_encoder, prompt_adapter,
decoder_step) into OUT_DIR/onnx/.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "engines" / "reference"))

BENCH_GROUPS = ("image_encoder", "prompt_adapter", "decoder_step")


def bench_config(name: str) -> dict:
    base = {"official-bert-reduced": "official-bert"}.get(name, name)
    path = ROOT / "engines" / "configs" / f"{base}.json"
    if not path.is_file():
        raise SystemExit(f"make_model: unknown model {name!r} (no {path})")
    cfg = json.loads(path.read_text())
    # Dense captioning is not benchmarked (and not part of the reference PixelLLM module yet).
    cfg.pop("proposal_head", None)
    if name == "official-bert-reduced":
        cfg = copy.deepcopy(cfg)
        sam, eva = cfg["sam_image_encoder"], cfg["eva02_encoder"]
        sam["num_hidden_layers"], sam["global_attn_indexes"] = 8, [7]
        eva["num_hidden_layers"] = 6
        cfg["source"] = (cfg.get("source", "") + "; bench reduction: SAM 8/32 blocks (global at 7), EVA02 6/24 "
                         "blocks, every other size official")
    return cfg


def write_tokenizer(cfg: dict, out: Path) -> None:
    """The demo WordPiece tokenizer (pixelllm_ref.tokenizer) as tokenizer.json, so that the JS API can load the
    directory (the loop-lag measurement). It fits every bench model: <= vocab_size tokens, bos/eos ids inside it."""
    from pixelllm_ref import tokenizer

    n = tokenizer.vocab_size()
    if n <= cfg["vocab_size"] and max(cfg["bos_token_id"], cfg["eos_token_id"]) < n:
        (out / "tokenizer.json").write_text(tokenizer.build_tokenizer_json())


def is_current(name: str, out: Path) -> bool:
    """Was `out` written for NAME's architecture as engines/configs/ defines it now? (A cached bench model of an
    older config, e.g. the demo before its fused grid moved to 14 x 14, would otherwise be measured silently.)"""
    try:
        return json.loads((out / "config.json").read_text()) == bench_config(name)
    except (OSError, ValueError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("out_dir")
    ap.add_argument("--onnx", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="only compare OUT_DIR/config.json with NAME's config: exit 0 equal, 1 missing or different")
    a = ap.parse_args(argv)
    if a.check:
        return 0 if is_current(a.name, Path(a.out_dir)) else 1
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import save_file

    from pixelllm_ref.model import PixelLLM

    cfg = bench_config(a.name)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.no_grad():
        model = PixelLLM(cfg).eval()
        g = torch.Generator().manual_seed(1)
        tensors = {}
        for k, v in model.state_dict().items():
            v = v.detach().to(torch.float32)
            tensors[k] = (v + 0.02 * torch.randn(v.shape, generator=g)).contiguous()
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    write_tokenizer(cfg, out)
    n = sum(t.numel() for t in tensors.values())
    print(f"{out}: {len(tensors)} tensors, {n / 1e6:.1f} M params")
    if a.onnx:
        from pixelllm_ref.export_onnx import export_all

        np_tensors = {k: t.numpy() for k, t in tensors.items()}
        del model
        for group, path in export_all(cfg, np_tensors, out / "onnx", groups=BENCH_GROUPS).items():
            print(f"{group}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
