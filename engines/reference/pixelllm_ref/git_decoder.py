"""GIT-style text decoder (BERT layers over [visual tokens, context tokens, text tokens]).

Follows the official `pixel_llm/modeling/text_decoder.py` (TransformerDecoderTextualHead, BertEncoderAsDecoder,
WordAndPositionalEmbedding). Parameters live in Hugging Face BERT modules (`BertLayer`), so names read
`git_decoder.encoder.layer.0.attention.self.query.weight`; the forward is written here because the official layer
differs from HF in two places that matter for exactness:
  * the attention LayerNorm uses eps 1e-5 while the output LayerNorm uses eps 1e-12 (HF uses one eps for both;
    we set each module's eps after construction);
  * the query is scaled by head_dim**-0.5 BEFORE the q.k product (HF scales the product).
GELU is the exact (erf) one, as in HF "gelu". Word+position embedding LayerNorm has eps 1e-8.

Attention mask over the sequence [prefix = visual tokens (always valid) + context tokens, text tokens]:
  * every row sees every VALID prefix key (context token id 0 = padding is masked for all rows, -inf);
  * prefix rows never see text keys; text rows see text keys causally.
Context tokens use the same word+position embedding as text (positions restart at 0 for each).
`visual_projection` (Dense + LayerNorm eps 1e-5 applied to the visual tokens) belongs to the official `textual`
module, so it lives here (`git_decoder.visual_projection.{0,1}`).

The incremental API (prefill over the prefix, then one step per text token) uses a preallocated KV cache; it is
exact because prefix rows never attend to text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from .convert import ConversionError, OfficialParams

NEG_INF = float("-inf")
_PREFIX = "textual"  # official parameter scope of the text decoder


def config_from_official(official_cfg: dict) -> dict:
    td = official_cfg["text_decoder"]
    if td.get("name") != "git":
        raise ConversionError(f"git_decoder: text_decoder.name is {td.get('name')!r}, expected 'git'")
    if td.get("out_feat_fuse_method"):
        raise ConversionError("git_decoder: out_feat_fuse_method is not supported")
    hidden = int(td.get("hidden_size", 768))
    pa = official_cfg.get("prompt_adapter") or {}
    if "output_dim" not in pa:
        raise ConversionError("git_decoder: visual token size unknown (prompt_adapter.output_dim missing)")
    return {
        "hidden_size": hidden,
        "num_heads": int(td.get("num_heads", 12)),
        "num_layers": int(td.get("num_hidden_layers", 6)),
        "intermediate_size": 4 * hidden,
        "max_positions": int(td.get("max_caption_length", 1024)),
        "vocab_size": int(official_cfg["vocab_size"]),
        "visual_dim": int(pa["output_dim"]),
        "attention_ln_eps": 1e-5,
        "output_ln_eps": 1e-12,
        "embedding_ln_eps": 1e-8,
        "visual_ln_eps": 1e-5,
    }


def _dense(params: OfficialParams, path: str, name: str, out: dict):
    out[name + ".weight"] = params.take(path + "/kernel").T
    out[name + ".bias"] = params.take(path + "/bias")


def _ln(params: OfficialParams, path: str, name: str, out: dict):
    out[name + ".weight"] = params.take(path + "/scale")
    out[name + ".bias"] = params.take(path + "/bias")


def convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg["git_decoder"]
    out: dict[str, np.ndarray] = {}
    p = "git_decoder."
    _dense(params, f"{_PREFIX}/visual_projection.0", p + "visual_projection.0", out)
    _ln(params, f"{_PREFIX}/visual_projection.1", p + "visual_projection.1", out)
    out[p + "embeddings.word_embeddings.weight"] = params.take(f"{_PREFIX}/embedding/words/embedding")
    out[p + "embeddings.position_embeddings.weight"] = params.take(f"{_PREFIX}/embedding/positions/embedding")
    _ln(params, f"{_PREFIX}/embedding/layer_norm", p + "embeddings.LayerNorm", out)
    for i in range(c["num_layers"]):
        src = f"{_PREFIX}/transformer/encoder/layer.{i}"
        dst = f"{p}encoder.layer.{i}"
        for n in ("query", "key", "value"):
            _dense(params, f"{src}/attention/self/{n}", f"{dst}.attention.self.{n}", out)
        _dense(params, f"{src}/attention/output/dense", f"{dst}.attention.output.dense", out)
        _ln(params, f"{src}/attention/output/LayerNorm", f"{dst}.attention.output.LayerNorm", out)
        _dense(params, f"{src}/intermediate/dense", f"{dst}.intermediate.dense", out)
        _dense(params, f"{src}/output/dense", f"{dst}.output.dense", out)
        _ln(params, f"{src}/output/LayerNorm", f"{dst}.output.LayerNorm", out)
    _dense(params, f"{_PREFIX}/output", p + "output", out)
    if params.has(f"{_PREFIX}/transformer/encoder/layer.{c['num_layers']}/attention/self/query/kernel"):
        raise ConversionError("git_decoder: official model has more layers than the config says")
    if out[p + "embeddings.position_embeddings.weight"].shape[0] != c["max_positions"]:
        raise ConversionError("git_decoder: position table size differs from text_decoder.max_caption_length")
    return out


class GitEmbeddings(nn.Module):
    """Word + learned absolute position embedding, then LayerNorm (official WordAndPositionalEmbedding)."""

    def __init__(self, c: dict):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embeddings = nn.Embedding(c["max_positions"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["embedding_ln_eps"])

    def forward(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        n = tokens.shape[-1]
        if start + n > self.position_embeddings.num_embeddings:
            raise ValueError(f"git_decoder: position {start + n - 1} beyond the position table "
                             f"({self.position_embeddings.num_embeddings})")
        pos = self.position_embeddings.weight[start:start + n]
        return self.LayerNorm(self.word_embeddings(tokens) + pos)


class GitEncoder(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        bc = BertConfig(hidden_size=c["hidden_size"], num_attention_heads=c["num_heads"],
                        intermediate_size=c["intermediate_size"], hidden_act="gelu",
                        vocab_size=c["vocab_size"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.layer = nn.ModuleList([BertLayer(bc) for _ in range(c["num_layers"])])
        for lyr in self.layer:
            lyr.attention.output.LayerNorm.eps = c["attention_ln_eps"]
            lyr.output.LayerNorm.eps = c["output_ln_eps"]


@dataclass
class GitState:
    """Incremental decode state: per-layer K/V over [prefix, text] (N, H, P + max_len, Dh) and the additive key mask."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    key_bias: torch.Tensor     # (N, 1, 1, P + max_len): 0 for valid prefix keys, -inf for padded context keys
    prefix_len: int
    max_len: int


class GitDecoder(nn.Module):
    """Official GIT textual head. forward(visual (N,T,Dv), context (N,Lc)|None, tokens (N,L)) -> logits, hidden."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg["git_decoder"]
        self.c = c
        self.attention_capture: list | None = None  # when a list, each layer's attention probabilities are appended
        self.num_heads = c["num_heads"]
        self.head_dim = c["hidden_size"] // c["num_heads"]
        self.visual_projection = nn.Sequential(nn.Linear(c["visual_dim"], c["hidden_size"]),
                                               nn.LayerNorm(c["hidden_size"], eps=c["visual_ln_eps"]))
        self.embeddings = GitEmbeddings(c)
        self.encoder = GitEncoder(c)
        self.output = nn.Linear(c["hidden_size"], c["vocab_size"])

    # ---- shared pieces -------------------------------------------------------------------------------------
    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (N,S,D) -> (N,H,S,Dh)
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def _qkv(self, lyr: BertLayer, h: torch.Tensor):
        a = lyr.attention.self
        return self._heads(a.query(h)), self._heads(a.key(h)), self._heads(a.value(h))

    def _finish_layer(self, lyr: BertLayer, h: torch.Tensor, q, k, v, bias) -> torch.Tensor:
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2) + bias
        probs = torch.softmax(scores, dim=-1)
        if self.attention_capture is not None:  # training-only inspection (pixelllm_ref.train attention guidance)
            self.attention_capture.append(probs)
        ctx = probs @ v
        ctx = ctx.transpose(1, 2).reshape(h.shape)
        att = lyr.attention.output.LayerNorm(lyr.attention.output.dense(ctx) + h)
        inter = lyr.intermediate.intermediate_act_fn(lyr.intermediate.dense(att))
        return lyr.output.LayerNorm(lyr.output.dense(inter) + att)

    def prefix(self, visual: torch.Tensor, context: torch.Tensor | None):
        """Visual tokens projected (+ context embeddings) and the prefix validity (N, P) bool."""
        x = self.visual_projection(visual)
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if context is not None:
            x = torch.cat([x, self.embeddings(context)], dim=1)
            valid = torch.cat([valid, context > 0], dim=1)
        return x, valid

    # ---- full forward (official semantics) -----------------------------------------------------------------
    def forward(self, visual: torch.Tensor, context: torch.Tensor | None, tokens: torch.Tensor):
        x, valid = self.prefix(visual, context)
        p, n = x.shape[1], tokens.shape[1]
        h = torch.cat([x, self.embeddings(tokens)], dim=1)
        s = p + n
        bias = torch.zeros(s, s, dtype=h.dtype, device=h.device)
        bias[:p, p:] = NEG_INF
        bias[p:, p:] = torch.triu(torch.full((n, n), NEG_INF, dtype=h.dtype, device=h.device), diagonal=1)
        key_pad = torch.zeros(valid.shape[0], s, dtype=h.dtype, device=h.device)
        key_pad[:, :p] = torch.where(valid, 0.0, NEG_INF)
        bias = bias[None, None] + key_pad[:, None, None, :]
        for lyr in self.encoder.layer:
            q, k, v = self._qkv(lyr, h)
            h = self._finish_layer(lyr, h, q, k, v, bias)
        hidden = h[:, p:]
        return self.output(hidden), hidden

    # ---- incremental API ----------------------------------------------------------------------------------
    def prefill(self, visual: torch.Tensor, context: torch.Tensor | None, max_len: int) -> GitState:
        """Runs the prefix once and preallocates K/V for max_len text positions."""
        if max_len > self.c["max_positions"]:
            raise ValueError(f"git_decoder: max_len {max_len} > position table {self.c['max_positions']}")
        x, valid = self.prefix(visual, context)
        nb, p = x.shape[:2]
        key_bias = torch.zeros(nb, 1, 1, p + max_len, dtype=x.dtype, device=x.device)
        key_bias[:, 0, 0, :p] = torch.where(valid, 0.0, NEG_INF)
        key_bias[:, 0, 0, p:] = NEG_INF  # not written yet
        bias = key_bias[..., :p]
        keys, values = [], []
        h = x
        for lyr in self.encoder.layer:
            q, k, v = self._qkv(lyr, h)
            kc = torch.zeros(nb, self.num_heads, p + max_len, self.head_dim, dtype=x.dtype, device=x.device)
            vc = torch.zeros_like(kc)
            kc[:, :, :p], vc[:, :, :p] = k, v
            keys.append(kc)
            values.append(vc)
            h = self._finish_layer(lyr, h, q, k, v, bias)
        return GitState(keys, values, key_bias, p, max_len)

    def step(self, state: GitState, tokens: torch.Tensor, position: int):
        """Feeds text token `tokens` (N,) at text position `position`; returns logits (N,V), hidden (N,D) there."""
        if not 0 <= position < state.max_len:
            raise ValueError(f"git_decoder: position {position} outside the cache (max_len {state.max_len})")
        at = state.prefix_len + position
        state.key_bias[:, 0, 0, at] = 0.0
        state.key_bias[:, 0, 0, at + 1:] = NEG_INF
        bias = state.key_bias[..., :at + 1]
        h = self.embeddings(tokens[:, None], start=position)
        for lyr, kc, vc in zip(self.encoder.layer, state.keys, state.values):
            q, k, v = self._qkv(lyr, h)
            kc[:, :, at:at + 1] = k
            vc[:, :, at:at + 1] = v
            h = self._finish_layer(lyr, h, q, kc[:, :, :at + 1], vc[:, :, :at + 1], bias)
        return self.output(h[:, 0]), h[:, 0]

    def reorder(self, state: GitState, index: torch.Tensor) -> None:
        """Rows of the state := rows[index] (beam search)."""
        state.keys = [k.index_select(0, index) for k in state.keys]
        state.values = [v.index_select(0, index) for v in state.values]
        state.key_bias = state.key_bias.index_select(0, index)
