"""PyTorch peer of the benchmark: the reference model (pixelllm_ref.model.PixelLLM) on the same model directory,
answering the same line protocol as bench/native/bench_native.cc (one JSON object per line; see there):
info, encode, steps N, caption N, concurrent K N, rss, quit.

    engines/reference/.venv/bin/python bench/torch_peer.py MODEL_DIR THREADS

The caption loop is the reference's own incremental decoder (GitDecoder.prefill / step with its KV cache) and the
point head at every step, with the same rules as the native bench (greedy, repeat cap -1e4, eos suppressed so
that exactly N tokens are generated on random weights).
"""
from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines" / "reference"))


def test_image(s: int) -> torch.Tensor:
    """The same synthetic canvas as BenchModel::test_image (uint8 values as float)."""
    y = torch.arange(s).view(s, 1, 1)
    x = torch.arange(s).view(1, s, 1)
    c = torch.arange(3).view(1, 1, 3)
    return ((x * (c + 1) + y * (3 - c) * 7) & 255).to(torch.float32)[None]


def peak_rss_mb() -> float:
    """VmHWM (this process image's high-water mark); ru_maxrss is carried across execve from the spawning Node."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    model_dir, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from pixelllm_ref.model import PixelLLM

    t0 = time.perf_counter()
    model = PixelLLM.load(model_dir)
    load_ms = (time.perf_counter() - t0) * 1e3
    s = model.image_size[0]
    image = test_image(s)
    mask = torch.ones(1, s, s)
    dec, head = model.text, model.point_head
    cache = {}

    def encode():
        return model.encode(image, mask)

    def visual_of(enc):
        return model.visual_tokens(enc)[:, 0]          # (1, T, Dv)

    def ensure_visual():
        if "visual" not in cache:
            cache["enc"] = encode()
            cache["visual"] = visual_of(cache["enc"])
        return cache["enc"], cache["visual"]

    @torch.inference_mode()      # thread-local: the concurrent threads need it too
    def caption(enc, visual, n, step_ms=None):
        state = dec.prefill(visual, None, n + 1)
        tok = torch.tensor([model.bos])
        out = []
        for i in range(n):
            t = time.perf_counter()
            logits, hidden = dec.step(state, tok, i)
            head(hidden[:, None], enc["image_hw"])
            logits = logits.clone()
            logits[0, tok[0]] = torch.minimum(logits[0, tok[0]], torch.tensor(-1e4))
            logits[0, model.eos] = float("-inf")
            tok = logits.argmax(dim=-1)
            out.append(int(tok[0]))
            if step_ms is not None:
                step_ms.append((time.perf_counter() - t) * 1e3)
        return out

    print(json.dumps({"ready": True, "load_ms": load_ms}), flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            cmd, args = parts[0], [int(a) for a in parts[1:]]
            if cmd == "quit":
                break
            t = time.perf_counter()
            if cmd == "info":
                res = {"image_size": s, "threads": torch.get_num_threads(), "torch": torch.__version__}
            elif cmd == "encode":
                cache["enc"] = encode()
                cache.pop("visual", None)
                res = {"ms": (time.perf_counter() - t) * 1e3}
            elif cmd == "steps":
                enc, visual = ensure_visual()
                step_ms = []
                caption(enc, visual, args[0], step_ms)
                res = {"step_ms": step_ms}
            elif cmd == "caption":
                enc = encode()
                t_enc = time.perf_counter()
                visual = visual_of(enc)
                t_ad = time.perf_counter()
                toks = caption(enc, visual, args[0])
                t_end = time.perf_counter()
                res = {"ms": (t_end - t) * 1e3, "encode_ms": (t_enc - t) * 1e3, "adapter_ms": (t_ad - t_enc) * 1e3,
                       "decode_ms": (t_end - t_ad) * 1e3, "tokens": len(toks)}
            elif cmd == "concurrent":
                k, n = args
                enc, visual = ensure_visual()
                errors = []

                def run():
                    try:
                        caption(enc, visual, n)
                    except Exception as e:  # reported, not swallowed
                        errors.append(repr(e))

                ths = [threading.Thread(target=run) for _ in range(k)]
                t = time.perf_counter()
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                ms = (time.perf_counter() - t) * 1e3
                res = {"error": errors[0]} if errors else {"ms": ms, "tokens_per_s": 1e3 * k * n / ms}
            elif cmd == "rss":
                res = {"peak_rss_mb": peak_rss_mb()}
            else:
                res = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
