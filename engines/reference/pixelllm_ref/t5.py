"""T5 text head: encoder over [visual tokens, context tokens], decoder over text tokens.

Follows the official `pixel_llm/modeling/t5_text_head.py` (CustomTransformer, CustomEncoder/Decoder and their layers,
LoRADenseGeneral) on top of t5x `examples/t5/layers.py` + `network.py` (commit cc342d41). Parameters live in Hugging
Face T5 modules (`T5Block`), so names read `t5.encoder.block.0.layer.0.SelfAttention.q.weight` (the same names as
`T5ForConditionalGeneration`, without the tied `encoder/decoder.embed_tokens` copies of `t5.shared.weight`).
The forward is written here to reproduce the official masks exactly:
  * no 1/sqrt(d) attention scaling (T5); RMS LayerNorm eps 1e-6; gated MLP wo(gelu_tanh(wi_0 x) * wi_1 x)
    (`mlp_activations: [gelu, linear]`: t5x takes `flax.linen.gelu`, whose default is the tanh approximation,
    which is HF "gelu_new");
  * masks become additive biases of 0 / -1e10 (not -inf): a fully masked query row then attends UNIFORMLY to all
    keys, exactly as in t5x;
  * encoder mask: valid[q] & valid[k], valid = [visual: 1, context: token > 0];
  * decoder self mask: causal & tv[q] & tv[k] and cross mask tv[q] & valid_enc[k], where tv = the official
    "decoder target" validity: tv[i] = tokens[i+1] > 0 (tv[last] = False);
  * relative position buckets computed like t5x (with its float32 eps), 32 buckets, max distance 128,
    bidirectional in the encoder, causal in the decoder, one table per stack (HF: in block 0);
  * the official LoRA (q and v of encoder self, decoder self and cross attention) is merged into the base kernels
    at conversion: kernel + scale * (left @ right), `scale` = the config's lora_scale as is (no /rank).
Incremental decoding (prefill = encoder + cross K/V, then one step per token with a self-attention KV cache) equals
the official full recompute of the official decode loop, where every not-yet-written position holds EOS (> 0): the
current query is valid, and key j < current is valid iff the token at j+1 is not 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5Block, T5Config, T5LayerNorm

from .convert import ConversionError, OfficialParams

MASK_BIAS = -1e10   # t5x MultiHeadDotProductAttention: masked logits get -1e10
_PREFIX = "textual/t5_module"

# Sizes of the official `scenic/projects/t5/model.py` CONFIGS, used when the text_decoder args do not give them.
_T5_SIZES = {
    "flan_t5_small": (512, 6, 8, 8, 64, 1024),
    "flan_t5_base": (768, 12, 12, 12, 64, 2048),
    "flan_t5_large": (1024, 16, 24, 24, 64, 2816),
    "flan_t5_xl": (2048, 32, 24, 24, 64, 5120),
    "flan_t5_xxl": (4096, 64, 24, 24, 64, 10240),
}


def config_from_official(official_cfg: dict) -> dict:
    td = dict(official_cfg["text_decoder"])
    name = td.get("name", "")
    if "t5" not in name:
        raise ConversionError(f"t5: text_decoder.name is {name!r}, not a T5 head")
    if name in _T5_SIZES:
        keys = ("emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim", "mlp_dim")
        for k, v in zip(keys, _T5_SIZES[name]):
            td.setdefault(k, v)
    need = ("emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim", "mlp_dim")
    missing = [k for k in need if k not in td]
    if missing:
        raise ConversionError(f"t5: text_decoder lacks {missing} and {name!r} is not a known T5 size")
    acts = list(td.get("mlp_activations", ["gelu", "linear"]))
    if acts != ["gelu", "linear"]:
        raise ConversionError(f"t5: mlp_activations {acts} not supported (only [gelu, linear])")
    if td.get("logits_via_embedding", False):
        raise ConversionError("t5: logits_via_embedding=True is not supported")
    for side in ("encoder", "decoder"):
        mods = td.get(f"{side}_lora_modules", td.get("lora_modules", "q,v"))
        if int(td.get(f"{side}_lora_rank", 0)) > 0 and ("k" in mods or "o" in mods):
            raise ConversionError(f"t5: LoRA on {mods!r} not supported (only q,v)")
    return {
        "d_model": int(td["emb_dim"]),
        "num_heads": int(td["num_heads"]),
        "d_kv": int(td["head_dim"]),
        "d_ff": int(td["mlp_dim"]),
        "num_encoder_layers": int(td["num_encoder_layers"]),
        "num_decoder_layers": int(td["num_decoder_layers"]),
        "vocab_size": int(td.get("vocab_size", 32128)),   # T5TextualHead's own default, not the top-level one
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "layer_norm_eps": 1e-6,
        "feed_forward_proj": "gated-gelu",   # gelu = tanh approximation (HF gelu_new)
        # LoRA is merged into q/v at conversion; kept for provenance and for the converter.
        "encoder_lora_rank": int(td.get("encoder_lora_rank", 0)),
        "encoder_lora_scale": float(td.get("encoder_lora_scale", 1.0)),
        "decoder_lora_rank": int(td.get("decoder_lora_rank", 0)),
        "decoder_lora_scale": float(td.get("decoder_lora_scale", 1.0)),
        "lora_merged": True,
    }


def lora_merge(kernel: np.ndarray, left: np.ndarray, right: np.ndarray, scale: float) -> np.ndarray:
    """Official LoRADenseGeneral: kernel (in, out) + scale * left (in, r) @ right (r, out)."""
    return (kernel.astype(np.float32) + np.float32(scale) * (left.astype(np.float32) @ right.astype(np.float32)))


def _attention(params: OfficialParams, src: str, dst: str, out: dict, lora_scale: float | None):
    for o, t in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
        kern = params.take(f"{src}/{o}/kernel")
        lpath = f"{src}/{o}/kernel_left_lora"
        if params.has(lpath):
            if lora_scale is None or o not in ("query", "value"):
                raise ConversionError(f"t5: unexpected LoRA parameters at {src}/{o}")
            kern = lora_merge(kern, params.take(lpath), params.take(f"{src}/{o}/kernel_right_lora"), lora_scale)
        elif lora_scale is not None and o in ("query", "value"):
            raise ConversionError(f"t5: LoRA rank > 0 but {lpath} is missing")
        out[f"{dst}.{t}.weight"] = kern.T


def convert_official(params: OfficialParams, cfg: dict) -> dict[str, np.ndarray]:
    c = cfg["t5"]
    out: dict[str, np.ndarray] = {}
    out["t5.shared.weight"] = params.take(f"{_PREFIX}/token_embedder/embedding")
    lora = {}
    for side in ("encoder", "decoder"):
        has = params.has(f"{_PREFIX}/{side}/layers_0/" + ("attention" if side == "encoder" else "self_attention")
                         + "/query/kernel_left_lora")
        if has != (c[f"{side}_lora_rank"] > 0):
            raise ConversionError(f"t5: {side} LoRA parameters present={has} but {side}_lora_rank="
                                  f"{c[f'{side}_lora_rank']}")
        lora[side] = float(c[f"{side}_lora_scale"]) if has else None
    for i in range(c["num_encoder_layers"]):
        src, dst = f"{_PREFIX}/encoder/layers_{i}", f"t5.encoder.block.{i}.layer"
        out[f"{dst}.0.layer_norm.weight"] = params.take(f"{src}/pre_attention_layer_norm/scale")
        _attention(params, f"{src}/attention", f"{dst}.0.SelfAttention", out, lora["encoder"])
        out[f"{dst}.1.layer_norm.weight"] = params.take(f"{src}/pre_mlp_layer_norm/scale")
        for n in ("wi_0", "wi_1", "wo"):
            out[f"{dst}.1.DenseReluDense.{n}.weight"] = params.take(f"{src}/mlp/{n}/kernel").T
    out["t5.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
        params.take(f"{_PREFIX}/encoder/relpos_bias/rel_embedding").T
    out["t5.encoder.final_layer_norm.weight"] = params.take(f"{_PREFIX}/encoder/encoder_norm/scale")
    for i in range(c["num_decoder_layers"]):
        src, dst = f"{_PREFIX}/decoder/layers_{i}", f"t5.decoder.block.{i}.layer"
        out[f"{dst}.0.layer_norm.weight"] = params.take(f"{src}/pre_self_attention_layer_norm/scale")
        _attention(params, f"{src}/self_attention", f"{dst}.0.SelfAttention", out, lora["decoder"])
        out[f"{dst}.1.layer_norm.weight"] = params.take(f"{src}/pre_cross_attention_layer_norm/scale")
        _attention(params, f"{src}/encoder_decoder_attention", f"{dst}.1.EncDecAttention", out, lora["decoder"])
        out[f"{dst}.2.layer_norm.weight"] = params.take(f"{src}/pre_mlp_layer_norm/scale")
        for n in ("wi_0", "wi_1", "wo"):
            out[f"{dst}.2.DenseReluDense.{n}.weight"] = params.take(f"{src}/mlp/{n}/kernel").T
    out["t5.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
        params.take(f"{_PREFIX}/decoder/relpos_bias/rel_embedding").T
    out["t5.decoder.final_layer_norm.weight"] = params.take(f"{_PREFIX}/decoder/decoder_norm/scale")
    out["t5.lm_head.weight"] = params.take(f"{_PREFIX}/decoder/logits_dense/kernel").T
    for side, n in (("encoder", c["num_encoder_layers"]), ("decoder", c["num_decoder_layers"])):
        if params.has(f"{_PREFIX}/{side}/layers_{n}/pre_mlp_layer_norm/scale"):
            raise ConversionError(f"t5: official {side} has more layers than the config says")
    return out


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
    """t5x RelativePositionBiases._relative_position_bucket (memory - query position), float32 math with eps."""
    ret = np.zeros_like(relative_position, dtype=np.int32)
    n = -relative_position.astype(np.int32)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        val_if_large = max_exact + (
            np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
            / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


@dataclass
class T5State:
    """Incremental decode state.

    enc_keys/enc_values: per decoder layer cross-attention K/V (N, H, S, Dh); enc_bias (N, 1, 1, S) 0 / -1e10.
    keys/values: per decoder layer self-attention cache (N, H, max_len, Dh); key_valid (N, max_len) bool.
    """

    enc_keys: list[torch.Tensor]
    enc_values: list[torch.Tensor]
    enc_bias: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    key_valid: torch.Tensor
    max_len: int


class _Stack(nn.Module):
    def __init__(self, tc: T5Config, n: int, decoder: bool):
        super().__init__()
        tc = T5Config(**{**tc.to_dict(), "is_decoder": decoder})
        self.block = nn.ModuleList([T5Block(tc, has_relative_attention_bias=(i == 0), layer_idx=i) for i in range(n)])
        self.final_layer_norm = T5LayerNorm(tc.d_model, eps=tc.layer_norm_epsilon)


class T5(nn.Module):
    """Official T5 head. forward(visual (N,T,D), context (N,Lc)|None, tokens (N,L)) -> logits (N,L,V), hidden."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg["t5"]
        self.c = c
        tc = T5Config(vocab_size=c["vocab_size"], d_model=c["d_model"], d_kv=c["d_kv"], d_ff=c["d_ff"],
                      num_heads=c["num_heads"], num_layers=c["num_encoder_layers"],
                      num_decoder_layers=c["num_decoder_layers"], feed_forward_proj=c["feed_forward_proj"],
                      relative_attention_num_buckets=c["relative_attention_num_buckets"],
                      relative_attention_max_distance=c["relative_attention_max_distance"],
                      layer_norm_epsilon=c["layer_norm_eps"], dropout_rate=0.0)
        if tc.dense_act_fn != "gelu_new":
            raise RuntimeError(f"t5: transformers maps gated-gelu to {tc.dense_act_fn!r}, expected gelu_new (tanh)")
        self.num_heads, self.d_kv = c["num_heads"], c["d_kv"]
        self.shared = nn.Embedding(c["vocab_size"], c["d_model"])
        self.encoder = _Stack(tc, c["num_encoder_layers"], decoder=False)
        self.decoder = _Stack(tc, c["num_decoder_layers"], decoder=True)
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    # ---- pieces ----------------------------------------------------------------------------------------------
    def _relpos(self, stack: _Stack, qlen: int, klen: int, bidirectional: bool) -> torch.Tensor:
        """(H, qlen, klen) relative position bias."""
        rel = np.arange(klen, dtype=np.int32)[None, :] - np.arange(qlen, dtype=np.int32)[:, None]
        b = relative_position_bucket(rel, bidirectional, self.c["relative_attention_num_buckets"],
                                     self.c["relative_attention_max_distance"])
        table = stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight  # (buckets, H)
        return table[torch.from_numpy(b.astype(np.int64))].permute(2, 0, 1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.d_kv).transpose(1, 2)

    def _attend(self, att, q_in: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q = self._heads(att.q(q_in))
        w = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
        ctx = (w @ v).transpose(1, 2).reshape(q_in.shape[0], q_in.shape[1], -1)
        return att.o(ctx)

    @staticmethod
    def _mlp(layer, x: torch.Tensor) -> torch.Tensor:
        d = layer.DenseReluDense
        return d.wo(d.act(d.wi_0(x)) * d.wi_1(x))

    @staticmethod
    def _mask_bias(mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, 0.0, MASK_BIAS).to(torch.float32)

    def encode(self, visual: torch.Tensor, context: torch.Tensor | None):
        """Encoder outputs (N, S, D) and their validity (N, S) bool."""
        x = visual
        valid = torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)
        if context is not None:
            x = torch.cat([x, self.shared(context)], dim=1)
            valid = torch.cat([valid, context > 0], dim=1)
        s = x.shape[1]
        if context is not None:
            bias = self._mask_bias(valid[:, None, :, None] & valid[:, None, None, :])
            bias = bias + self._relpos(self.encoder, s, s, True)[None]
        else:
            bias = self._relpos(self.encoder, s, s, True)[None]
        for blk in self.encoder.block:
            sa = blk.layer[0]
            h = sa.layer_norm(x)
            x = x + self._attend(sa.SelfAttention, h, self._heads(sa.SelfAttention.k(h)),
                                 self._heads(sa.SelfAttention.v(h)), bias)
            ff = blk.layer[1]
            x = x + self._mlp(ff, ff.layer_norm(x))
        return self.encoder.final_layer_norm(x), valid

    def _decoder_block(self, blk, y, self_k, self_v, self_bias, enc_k, enc_v, enc_bias):
        sa, ca, ff = blk.layer
        y = y + self._attend(sa.SelfAttention, sa.layer_norm(y), self_k, self_v, self_bias)
        y = y + self._attend(ca.EncDecAttention, ca.layer_norm(y), enc_k, enc_v, enc_bias)
        return y + self._mlp(ff, ff.layer_norm(y))

    # ---- full forward (official semantics) -----------------------------------------------------------------
    def forward(self, visual: torch.Tensor, context: torch.Tensor | None, tokens: torch.Tensor):
        enc, enc_valid = self.encode(visual, context)
        n = tokens.shape[1]
        tv = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1) > 0   # decoder target validity
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=tokens.device))
        self_bias = self._mask_bias(causal[None, None] & tv[:, None, :, None] & tv[:, None, None, :])
        self_bias = self_bias + self._relpos(self.decoder, n, n, False)[None]
        enc_bias = self._mask_bias(tv[:, None, :, None] & enc_valid[:, None, None, :])
        y = self.shared(tokens)
        for blk in self.decoder.block:
            sa, ca = blk.layer[0].SelfAttention, blk.layer[1].EncDecAttention
            h = blk.layer[0].layer_norm(y)
            sk, sv = self._heads(sa.k(h)), self._heads(sa.v(h))
            ek, ev = self._heads(ca.k(enc)), self._heads(ca.v(enc))
            y = self._decoder_block(blk, y, sk, sv, self_bias, ek, ev, enc_bias)
        hidden = self.decoder.final_layer_norm(y)
        return self.lm_head(hidden), hidden

    # ---- incremental API ----------------------------------------------------------------------------------
    def prefill(self, visual: torch.Tensor, context: torch.Tensor | None, max_len: int) -> T5State:
        """Runs the encoder, precomputes cross-attention K/V, preallocates the self-attention cache."""
        enc, enc_valid = self.encode(visual, context)
        nb = enc.shape[0]
        enc_keys, enc_values, keys, values = [], [], [], []
        for blk in self.decoder.block:
            ca = blk.layer[1].EncDecAttention
            enc_keys.append(self._heads(ca.k(enc)))
            enc_values.append(self._heads(ca.v(enc)))
            keys.append(torch.zeros(nb, self.num_heads, max_len, self.d_kv, dtype=enc.dtype, device=enc.device))
            values.append(torch.zeros_like(keys[-1]))
        enc_bias = self._mask_bias(enc_valid)[:, None, None, :]
        key_valid = torch.zeros(nb, max_len, dtype=torch.bool, device=enc.device)
        return T5State(enc_keys, enc_values, enc_bias, keys, values, key_valid, max_len)

    def step(self, state: T5State, tokens: torch.Tensor, position: int):
        """Feeds `tokens` (N,) at decoder position `position`; returns logits (N,V), hidden (N,D) there.

        The last buffer position (max_len - 1) is refused: officially its query is always invalid (it has no next
        token), so it attends uniformly; the decode loops never read it.
        """
        if not 0 <= position < state.max_len - 1:
            raise ValueError(f"t5: position {position} outside 0..max_len-2 (max_len {state.max_len}); the official "
                             "decoder never reads the last position")
        if position > 0:   # official target validity of the previous position: its next token is not 0
            state.key_valid[:, position - 1] = tokens != 0
        state.key_valid[:, position] = True   # the next token is unknown; official placeholder (EOS) is > 0
        state.key_valid[:, position + 1:] = False
        bias = self._mask_bias(state.key_valid[:, None, None, :position + 1])
        bias = bias + self._relpos(self.decoder, position + 1, position + 1, False)[None, :, position:position + 1]
        y = self.shared(tokens[:, None])
        for i, blk in enumerate(self.decoder.block):
            sa = blk.layer[0].SelfAttention
            h = blk.layer[0].layer_norm(y)
            state.keys[i][:, :, position:position + 1] = self._heads(sa.k(h))
            state.values[i][:, :, position:position + 1] = self._heads(sa.v(h))
            y = self._decoder_block(blk, y, state.keys[i][:, :, :position + 1], state.values[i][:, :, :position + 1],
                                    bias, state.enc_keys[i], state.enc_values[i], state.enc_bias)
        hidden = self.decoder.final_layer_norm(y)[:, 0]
        return self.lm_head(hidden), hidden

    def reorder(self, state: T5State, index: torch.Tensor) -> None:
        """Rows of the state := rows[index] (beam search)."""
        for name in ("enc_keys", "enc_values", "keys", "values"):
            setattr(state, name, [t.index_select(0, index) for t in getattr(state, name)])
        state.enc_bias = state.enc_bias.index_select(0, index)
        state.key_valid = state.key_valid.index_select(0, index)
