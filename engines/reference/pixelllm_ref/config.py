"""Our config.json: top-level fields here; each component owns the section stored under its own name."""
from __future__ import annotations

SAM_PIXEL_MEAN = [123.675, 116.28, 103.53]
SAM_PIXEL_STD = [58.395, 57.12, 57.375]


def from_official(official_cfg: dict) -> dict:
    head = official_cfg["text_decoder"]["name"]
    return {
        "format": "pixelllm",
        "format_version": 1,
        "text_decoder": {"git": "git_decoder", "t5": "t5"}[head],
        "image_size": int(official_cfg["git_backbone"]["image_size"][0]),
        "vocab_size": int(official_cfg["vocab_size"]),
        "bos_token_id": int(official_cfg["begin_token_id"]),
        "eos_token_id": int(official_cfg["end_token_id"]),
        "pad_token_id": 0,
        "max_caption_length": int(official_cfg["max_caption_length"]),
        "source": official_cfg.get("source", ""),
    }
