"""ONNX export of PixelLLM, one graph per component group, for the TensorRT backend and onnxruntime checks.

    python -m pixelllm_ref.export_onnx MODEL_DIR OUT_DIR [--fp16] [--opset 17]

Graphs (inputs -> outputs; N = rows, B = images, P = prompts; every float tensor is float32 at the graph boundary,
integer tensors are int64):
  image_encoder    images (B,S,S,3) 0..255, padding_mask (B,S,S) 1 = valid
                   -> features (B,G,G,C_eva+Cs) fused NHWC, sam_features (B,g,g,Cs) NHWC
  prompt_adapter   features (B,G,G,C), boxes (B,P,4) x0,y0,x1,y1 px of the padded image -> visual_tokens (B,P,T,Dv)
  decoder_prefill  visual_tokens (N,T,Dv), context_tokens (N,Lc), text_tokens (N,Lt), image_hw (N,2) valid (h,w)
                   -> logits (N,Lt,V), hidden (N,Lt,D), corners (N,Lt,K,2) px, point_logits (N,Lt,K,C+1),
                      key_bias (N,Lk) additive key mask of the self-attention cache, present_key.i/present_value.i
                      (N,H,Lk,Dh); T5 also encoder_key_bias (N,Ls), cross_key.i/cross_value.i (N,H,Ls,Dh).
                      GIT: Lk = T + Lc + Lt (prefix + text); T5: Lk = Lt, Ls = T + Lc.
  decoder_step     tokens (N,), position (N,) text position, image_hw (N,2), past_key_bias (N,C),
                   past_key.i/past_value.i (N,H,C,Dh) [T5: encoder_key_bias (N,Ls), cross_key.i/cross_value.i]
                   -> logits (N,V), hidden (N,D), corners (N,K,2), point_logits (N,K,C+1),
                      present_key.i/present_value.i (N,H,1,Dh) = the K/V row of this token (the runtime appends it).
  decoder_forward  (T5 only) visual_tokens, context_tokens, text_tokens, image_hw as decoder_prefill
                   -> logits (N,Lt,V), hidden (N,Lt,D), corners (N,Lt,K,2), point_logits (N,Lt,K,C+1): the official
                   teacher-forced pass `t5.T5.forward` with its masks on EVERY position (the rows from the EOS on
                   attend uniformly there, unlike the step semantics of decoder_prefill); the mask text states.
                   GIT needs none: its forward equals decoder_prefill.
  mask_decoder     sam_features (B,g,g,Cs), boxes (B,P,4), visual_tokens (B,P,T,Dv), text_hidden (B,P,L,D)
                   -> mask_logits (B,P,4g,4g), iou (B,P); Cs = the SAM neck width (256 in SAM ViT-B)
  proposal_head    features (B,G,G,C) -> heatmap (B,G,G) logits, box_regs (B,G,G,4) l,t,r,b in stride units
                   (only for a model with a proposal_head section; scores, boxes and NMS stay on the host:
                   proposal_head.postprocess)

The decoder graphs follow the reference incremental API (`git_decoder.GitDecoder.prefill/step`,
`t5.T5.prefill/step`, protocol in `decoding.py`), re-composed from the reference modules so that every length is
a dynamic axis (the reference slices with Python ints). The KV cache holds C >= written entries: the step attends
to all C past entries plus its own row, and `past_key_bias` (0 = valid, GIT -inf / T5 -1e10 = masked) says which
past entries count. The runtime keeps that bias:
  GIT: entries of the prefill keep the prefill's `key_bias`; text entry j is 0 once written; unwritten = -inf.
  T5:  text entry j < position is 0 iff the token at j+1 is not 0 (the official decode buffer rule, `T5.step`),
       i.e. when feeding token t at position p set bias[p-1] = (t == 0 ? -1e10 : 0); unwritten = -1e10.
The prefill over text tokens t_0..t_{n-1} equals step(t_0, 0) .. step(t_{n-1}, n-1) (T5: also the official
teacher-forced forward on every row before the first 0 after EOS). "No context" == one context token 0.

`--fp16` converts a graph (weights and activations) to float16 while LayerNorm / softmax (with the additive mask
before it) / reductions / pow / sqrt / exp / log / sin / cos and the prompt encoder's Fourier features run in
float32, and graph inputs/outputs stay float32. The result is a strongly typed graph: TensorRT builds it with the
precisions written in it (TensorRT 11 has no FP16 builder flag).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .t5 import MASK_BIAS, relative_position_bucket

OPSET = 17
GROUPS = ("image_encoder", "prompt_adapter", "decoder_prefill", "decoder_step", "mask_decoder")
OPTIONAL_GROUPS = ("proposal_head",)   # exported when the model has the component
T5_GROUPS = ("decoder_forward",)       # exported for a T5 text decoder


def model_groups(cfg: dict) -> tuple[str, ...]:
    """The groups a model has: GROUPS + the optional ones whose component is in the config (+ T5_GROUPS for T5)."""
    t5 = T5_GROUPS if cfg["text_decoder"] == "t5" else ()
    return GROUPS + t5 + tuple(g for g in OPTIONAL_GROUPS if g in cfg)


# ---- loading ---------------------------------------------------------------------------------------------------
def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def component_names(cfg: dict) -> list[str]:
    names = ["sam_image_encoder", "eva02_encoder", "feature_fusion", "prompt_encoder", "prompt_adapter",
             cfg["text_decoder"], "point_head", "mask_adapter", "mask_decoder"]
    if "proposal_head" in cfg:
        names.append("proposal_head")
    return names


def build_modules(cfg: dict, tensors: dict[str, np.ndarray]) -> dict[str, nn.Module]:
    """Every component module of the model, in eval mode, weights loaded strictly."""
    mods = {}
    for name in component_names(cfg):
        mod = importlib.import_module(f".{name}", __package__)
        m = getattr(mod, _camel(name))(cfg).eval()
        sd = {k[len(name) + 1:]: torch.from_numpy(np.asarray(v, np.float32)) for k, v in tensors.items()
              if k.startswith(name + ".")}
        m.load_state_dict(sd, strict=True)
        mods[name] = m
    return mods


def load_model_dir(model_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    d = Path(model_dir)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{d}: not a model directory (config.json + model.safetensors)")
    return json.loads((d / "config.json").read_text()), load_file(str(d / "model.safetensors"))


# ---- graph modules ---------------------------------------------------------------------------------------------
class ImageEncoderGraph(nn.Module):
    """Both backbones (preprocessing included) + feature fusion (pixel_llm.py forward_backbones + concat)."""

    def __init__(self, mods):
        super().__init__()
        self.sam, self.eva, self.fusion = mods["sam_image_encoder"], mods["eva02_encoder"], mods["feature_fusion"]

    def forward(self, images, padding_mask):
        sam = self.sam(images, padding_mask)
        eva = self.eva(images, padding_mask)
        return self.fusion(eva02_encoder=eva, sam_image_encoder=sam), sam


class PromptAdapterGraph(nn.Module):
    """prompt_adapter.visual_tokens: boxes are normalised by the padded input size (cfg image_size)."""

    def __init__(self, mods, cfg):
        super().__init__()
        self.pe, self.pa = mods["prompt_encoder"], mods["prompt_adapter"]
        self.size = (cfg["image_size"], cfg["image_size"])

    def forward(self, features, boxes):
        from .prompt_adapter import visual_tokens

        return visual_tokens(self.pe, self.pa, features, boxes, self.size)


def _points(head, hidden, image_hw):
    """The fused head: corners (.., K, 2) absolute px of the unpadded image, raw point logits."""
    return head(hidden, image_hw)


class GitPrefillGraph(nn.Module):
    """GitDecoder.forward over [visual, context, text] (= prefill + steps), returning the K/V of every position."""

    def __init__(self, mods):
        super().__init__()
        self.dec, self.head = mods["git_decoder"], mods["point_head"]

    def forward(self, visual, context, tokens, image_hw):
        dec = self.dec
        x, valid = dec.prefix(visual, context)
        p, n = x.shape[1], tokens.shape[1]
        h = torch.cat([x, dec.embeddings(tokens)], dim=1)
        pos = torch.arange(p + n, device=h.device)
        q_pos, k_pos = pos[:, None], pos[None, :]
        prefix_key = torch.cat([valid, torch.ones_like(tokens, dtype=torch.bool)], dim=1)   # (N, p+n)
        allowed = (k_pos < p) | ((q_pos >= p) & (k_pos <= q_pos))
        allowed = allowed[None, None] & prefix_key[:, None, None, :]
        bias = torch.where(allowed, 0.0, float("-inf"))
        kv = []
        for lyr in dec.encoder.layer:
            q, k, v = dec._qkv(lyr, h)
            kv += [k, v]
            h = dec._finish_layer(lyr, h, q, k, v, bias)
        hidden = h[:, p:]
        corners, plogits = _points(self.head, hidden, image_hw)
        key_bias = torch.where(prefix_key, 0.0, float("-inf"))
        return (dec.output(hidden), hidden, corners, plogits, key_bias, *kv)


class GitStepGraph(nn.Module):
    """GitDecoder.step with the cache as explicit inputs (C past entries + this token's own row)."""

    def __init__(self, mods):
        super().__init__()
        self.dec, self.head = mods["git_decoder"], mods["point_head"]

    def forward(self, tokens, position, image_hw, past_key_bias, *past):
        dec = self.dec
        emb = dec.embeddings
        h = emb.LayerNorm(emb.word_embeddings(tokens) + emb.position_embeddings(position))[:, None]
        bias = torch.cat([past_key_bias, torch.zeros_like(past_key_bias[:, :1])], dim=1)[:, None, None, :]
        new = []
        for i, lyr in enumerate(dec.encoder.layer):
            q, k, v = dec._qkv(lyr, h)
            keys = torch.cat([past[2 * i], k], dim=2)
            values = torch.cat([past[2 * i + 1], v], dim=2)
            h = dec._finish_layer(lyr, h, q, keys, values, bias)
            new += [k, v]
        hidden = h[:, 0]
        corners, plogits = _points(self.head, hidden[:, None], image_hw)
        return (dec.output(hidden), hidden, corners[:, 0], plogits[:, 0], *new)


class _T5Relpos(nn.Module):
    """t5x relative position buckets as a lookup over the clamped distance (exact: buckets saturate at max_distance)."""

    def __init__(self, c: dict):
        super().__init__()
        m, nb = c["relative_attention_max_distance"], c["relative_attention_num_buckets"]
        self.m = m
        rel = np.arange(-m, m + 1, dtype=np.int32)
        self.register_buffer("bi", torch.from_numpy(relative_position_bucket(rel, True, nb, m).astype(np.int64)),
                             persistent=False)
        self.register_buffer("causal", torch.from_numpy(relative_position_bucket(rel, False, nb, m).astype(np.int64)),
                             persistent=False)

    def bias(self, table: torch.Tensor, rel: torch.Tensor, bidirectional: bool) -> torch.Tensor:
        """rel = key - query positions (any shape) -> (..., H) bias from the (buckets, H) table."""
        idx = torch.clamp(rel, -self.m, self.m) + self.m
        return table[(self.bi if bidirectional else self.causal)[idx]]


def _mask_bias(mask):
    return torch.where(mask, 0.0, MASK_BIAS)


def _t5_encode(t5, relpos, visual, context):
    """t5.T5.encode with the context always present ("no context" = one 0 token, masked): (N,S,D), valid (N,S)."""
    x = torch.cat([visual, t5.shared(context)], dim=1)
    valid = torch.cat([torch.ones_like(visual[:, :, 0], dtype=torch.bool), context > 0], dim=1)
    s = torch.arange(x.shape[1], device=x.device)
    enc_table = t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    rel = relpos.bias(enc_table, s[None, :] - s[:, None], True).permute(2, 0, 1)
    bias = _mask_bias(valid[:, None, :, None] & valid[:, None, None, :]) + rel[None]
    for blk in t5.encoder.block:
        sa = blk.layer[0]
        hh = sa.layer_norm(x)
        x = x + t5._attend(sa.SelfAttention, hh, t5._heads(sa.SelfAttention.k(hh)),
                           t5._heads(sa.SelfAttention.v(hh)), bias)
        ff = blk.layer[1]
        x = x + t5._mlp(ff, ff.layer_norm(x))
    return t5.encoder.final_layer_norm(x), valid


class _T5TextGraph(nn.Module):
    """What the T5 text graphs share: the modules and the decoder's relative-position bias table."""

    def __init__(self, mods, cfg):
        super().__init__()
        self.t5, self.head = mods["t5"], mods["point_head"]
        self.relpos = _T5Relpos(cfg["t5"])

    def _decoder_table(self):
        return self.t5.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight

    def _decoder_relpos(self, n):
        """(1, H, L, L) decoder self-attention bias between text positions n."""
        return self.relpos.bias(self._decoder_table(), n[None, :] - n[:, None], False).permute(2, 0, 1)[None]


class T5PrefillGraph(_T5TextGraph):
    """T5.prefill (encoder + cross K/V) followed by the decoder over the given text tokens (step semantics)."""

    def forward(self, visual, context, tokens, image_hw):
        t5 = self.t5
        enc, valid = _t5_encode(t5, self.relpos, visual, context)
        enc_bias = _mask_bias(valid)
        n = torch.arange(tokens.shape[1], device=tokens.device)
        next_nz = torch.cat([tokens[:, 1:] != 0, torch.ones_like(tokens[:, :1], dtype=torch.bool)], dim=1)
        allowed = (n[None, :] <= n[:, None])[None] & ((n[None, :] == n[:, None])[None] | next_nz[:, None, :])
        self_bias = _mask_bias(allowed[:, None]) + self._decoder_relpos(n)
        y = t5.shared(tokens)
        selfkv, cross = [], []
        for blk in t5.decoder.block:
            sa, ca = blk.layer[0].SelfAttention, blk.layer[1].EncDecAttention
            hh = blk.layer[0].layer_norm(y)
            sk, sv = t5._heads(sa.k(hh)), t5._heads(sa.v(hh))
            ek, ev = t5._heads(ca.k(enc)), t5._heads(ca.v(enc))
            y = t5._decoder_block(blk, y, sk, sv, self_bias, ek, ev, enc_bias[:, None, None, :])
            selfkv += [sk, sv]
            cross += [ek, ev]
        hidden = t5.decoder.final_layer_norm(y)
        corners, plogits = _points(self.head, hidden, image_hw)
        key_bias = _mask_bias(next_nz)
        return (t5.lm_head(hidden), hidden, corners, plogits, key_bias, *selfkv, enc_bias, *cross)


class T5ForwardGraph(_T5TextGraph):
    """t5.T5.forward, the official teacher-forced pass (PixelLLM prepare_text_features): decoder target validity
    tv[j] = token[j+1] > 0 masks queries and keys of the self-attention and the queries of the cross-attention on
    every position, so the rows from the EOS on attend uniformly (decoder_prefill runs them with step semantics).
    The mask adapter reads all rows: this is the graph of the mask text states."""

    def forward(self, visual, context, tokens, image_hw):
        t5 = self.t5
        enc, enc_valid = _t5_encode(t5, self.relpos, visual, context)
        n = torch.arange(tokens.shape[1], device=tokens.device)
        tv = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1) > 0
        causal = n[None, :] <= n[:, None]
        self_bias = (_mask_bias(causal[None, None] & tv[:, None, :, None] & tv[:, None, None, :])
                     + self._decoder_relpos(n))
        enc_bias = _mask_bias(tv[:, None, :, None] & enc_valid[:, None, None, :])
        y = t5.shared(tokens)
        for blk in t5.decoder.block:
            sa, ca = blk.layer[0].SelfAttention, blk.layer[1].EncDecAttention
            hh = blk.layer[0].layer_norm(y)
            sk, sv = t5._heads(sa.k(hh)), t5._heads(sa.v(hh))
            ek, ev = t5._heads(ca.k(enc)), t5._heads(ca.v(enc))
            y = t5._decoder_block(blk, y, sk, sv, self_bias, ek, ev, enc_bias)
        hidden = t5.decoder.final_layer_norm(y)
        corners, plogits = _points(self.head, hidden, image_hw)
        return t5.lm_head(hidden), hidden, corners, plogits


class T5StepGraph(_T5TextGraph):
    """T5.step with the self-attention cache and the cross-attention K/V as explicit inputs."""

    def __init__(self, mods, cfg):
        super().__init__(mods, cfg)
        self.layers = cfg["t5"]["num_decoder_layers"]

    def forward(self, tokens, position, image_hw, past_key_bias, encoder_key_bias, *kv):
        t5 = self.t5
        nl = self.layers
        past, cross = kv[:2 * nl], kv[2 * nl:]
        c = past_key_bias.shape[1]
        k_pos = torch.cat([torch.arange(c, device=tokens.device)[None, :].expand(tokens.shape[0], -1),
                           position[:, None]], dim=1)                                    # (N, C+1)
        rel = self.relpos.bias(self._decoder_table(), k_pos - position[:, None], False)    # (N, C+1, H)
        bias = torch.cat([past_key_bias, torch.zeros_like(past_key_bias[:, :1])], dim=1)
        bias = bias[:, None, None, :] + rel.permute(0, 2, 1)[:, :, None, :]
        enc_bias = encoder_key_bias[:, None, None, :]
        y = t5.shared(tokens)[:, None]
        new = []
        for i, blk in enumerate(t5.decoder.block):
            sa = blk.layer[0].SelfAttention
            hh = blk.layer[0].layer_norm(y)
            k, v = t5._heads(sa.k(hh)), t5._heads(sa.v(hh))
            keys = torch.cat([past[2 * i], k], dim=2)
            values = torch.cat([past[2 * i + 1], v], dim=2)
            y = t5._decoder_block(blk, y, keys, values, bias, cross[2 * i], cross[2 * i + 1], enc_bias)
            new += [k, v]
        hidden = t5.decoder.final_layer_norm(y)[:, 0]
        corners, plogits = _points(self.head, hidden[:, None], image_hw)
        return (t5.lm_head(hidden), hidden, corners[:, 0], plogits[:, 0], *new)


class MaskDecoderGraph(nn.Module):
    """pixel_llm.py forward_mask_decode: box corner embeddings -> mask adapter (visual tokens + text states) ->
    SAM mask decoder over the SAM map with the no_mask dense prompt; multimask_output=False (mask 0, its IoU)."""

    def __init__(self, mods, cfg):
        super().__init__()
        self.pe, self.ma, self.md = mods["prompt_encoder"], mods["mask_adapter"], mods["mask_decoder"]
        self.size = (cfg["image_size"], cfg["image_size"])

    def forward(self, sam_features, boxes, visual_tokens, text_hidden):
        sparse = self.pe.embed_boxes(boxes, self.size)
        sparse = self.ma(sparse, visual_tokens, text_hidden)
        dense_pe = self.pe.get_dense_pe(sam_features.shape[1], sam_features.shape[2])
        masks, iou = self.md.predict(sam_features, dense_pe, sparse, self.pe.dense_embedding())
        return masks[:, :, 0], iou[:, :, 0]


class ProposalHeadGraph(nn.Module):
    """proposal_head.ProposalHead.forward: the heatmap logits and the box regression maps."""

    def __init__(self, mods):
        super().__init__()
        self.head = mods["proposal_head"]

    def forward(self, features):
        out = self.head(features)
        return out["heatmap"], out["box_regs"]


# ---- float16 conversion (strongly typed graph) ----------------------------------------------------------------
# Ops computed in float32 whatever their neighbours: normalisation statistics, softmax, transcendental functions.
FP32_OPS = frozenset({"LayerNormalization", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare",
                      "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Sin", "Cos", "Resize", "Range"})
# Cheap ops that stay float32 when all their non-constant float inputs are float32 (mask/bias chains, the
# preprocessing, the Fourier features); also constant subgraphs and floats made from ints/bools.
_FOLLOW_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Where", "Max", "Min", "Clip", "Concat",
                         "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Expand", "Slice", "Gather", "Tile",
                         "Identity", "Flatten", "Split"})
# Producers pulled into float32 when they feed a Softmax / Sin / Cos (the additive attention mask, the 2*pi*xG
# of the random Fourier features, whose argument is large enough for float16 rounding to matter).
_PULL_OPS = _FOLLOW_OPS | {"MatMul"}
_FP16_MAX = 65504.0


def convert_float16(model):
    """float32 ONNX -> strongly typed float16 ONNX (see the module docstring); inputs/outputs stay float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    model = shape_inference.infer_shapes(model)
    g = model.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        types[t.name] = t.data_type
    # Constant nodes -> initializers (one place to convert constants)
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            inits[t.name] = t
            types[t.name] = t.data_type
            continue
        nodes.append(n)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_inputs = {i.name for i in g.input}

    def is_float(name):
        if not name:
            return False
        if name not in types:
            raise RuntimeError(f"fp16: unknown element type of {name!r}")
        return types[name] == F32

    prec = {}   # node name -> F32 | F16
    for n in nodes:
        data = [i for i in n.input if is_float(i) and i not in inits]
        if n.op_type in FP32_OPS or not any(i and i not in inits for i in n.input):
            prec[n.name] = F32      # constant subgraphs (folded by TensorRT) and the float32 op types
        elif not data and n.op_type != "Gather":
            prec[n.name] = F32      # float made from ints/bools (masks, positions); embedding tables are float16
        elif n.op_type in _FOLLOW_OPS and data and all(i in graph_inputs or prec.get(producer[i].name) == F32
                                              for i in data):
            prec[n.name] = F32
        else:
            prec[n.name] = F16
    # pull producers of Softmax / Sin / Cos inputs into float32
    # (through MatMul only for Sin/Cos: the q.k product of attention stays float16, its mask add does not)
    stack = [(producer[i], 0, n.op_type != "Softmax") for n in nodes if n.op_type in ("Softmax", "Sin", "Cos")
             for i in n.input if i in producer]
    while stack:
        n, depth, through_matmul = stack.pop()
        if n.op_type not in _PULL_OPS or depth > 8 or (n.op_type == "MatMul" and not through_matmul):
            continue
        prec[n.name] = F32
        stack += [(producer[i], depth + 1, through_matmul) for i in n.input if i in producer and is_float(i)]
    # after the pull, ops fed only by float32 again follow (forward pass once more)
    for n in nodes:
        data = [i for i in n.input if is_float(i) and i not in inits]
        if prec[n.name] == F16 and n.op_type in _FOLLOW_OPS and data and \
                all(i in graph_inputs or prec.get(producer[i].name) == F32 for i in data):
            prec[n.name] = F32

    new_inits = {k: t for k, t in inits.items() if t.data_type != F32}   # ints/bools as they are
    casts, cache = [], {}

    def const_as(name, want):
        key = (name, want)
        if key in cache:
            return cache[key]
        arr = numpy_helper.to_array(inits[name])
        if want == F16:
            arr = np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16)
            new = name + "__fp16"
        else:
            new = name
        new_inits[new] = numpy_helper.from_array(arr, new)
        cache[key] = new
        return new

    def tensor_as(name, have, want):
        key = (name, want)
        if key not in cache:
            new = f"{name}__to{'16' if want == F16 else '32'}"
            if want == F16:   # saturate (masks of -1e10 / -inf stay huge but finite)
                lo, hi = name + "__lo", name + "__hi"
                new_inits[lo] = numpy_helper.from_array(np.array(-_FP16_MAX, np.float32), lo)
                new_inits[hi] = numpy_helper.from_array(np.array(_FP16_MAX, np.float32), hi)
                casts.append(helper.make_node("Clip", [name, lo, hi], [new + "__c"], name=new + "__clip"))
                casts.append(helper.make_node("Cast", [new + "__c"], [new], to=want, name=new + "__cast"))
            else:
                casts.append(helper.make_node("Cast", [name], [new], to=want, name=new + "__cast"))
            cache[key] = new
        return cache[key]

    out_type = {i: F32 for i in graph_inputs}
    rewritten = []
    for n in nodes:
        want = prec[n.name]
        ins = list(n.input)
        if n.op_type not in FP32_OPS and not any(is_float(o) for o in n.output):
            # Shape / comparisons / casts to int: take the data as it comes (no cast just to read a shape)
            live = [out_type[i] for i in ins if is_float(i) and i not in inits]
            want = live[0] if live else F32
        for k, name in enumerate(ins):
            if not is_float(name):
                continue
            if n.op_type == "Resize" and k in (1, 2):     # roi / scales are float32 by definition
                if name in inits:
                    ins[k] = const_as(name, F32)
                continue
            if name in inits:
                ins[k] = const_as(name, want)
            elif out_type[name] != want:
                ins[k] = tensor_as(name, out_type[name], want)
        casts_here, casts[:] = list(casts), []
        rewritten += casts_here
        m = onnx.NodeProto()
        m.CopyFrom(n)
        del m.input[:]
        m.input.extend(ins)
        if m.op_type == "Cast":
            for a in m.attribute:
                if a.name == "to" and a.i == F32:
                    a.i = want
        rewritten.append(m)
        for o in n.output:
            if is_float(o):
                out_type[o] = want
    outputs_fix = []
    for o in g.output:
        if out_type.get(o.name) == F16:
            for m in rewritten:
                for k, x in enumerate(m.output):
                    if x == o.name:
                        m.output[k] = o.name + "__out16"
                for k, x in enumerate(m.input):
                    if x == o.name:
                        m.input[k] = o.name + "__out16"
            outputs_fix.append(helper.make_node("Cast", [o.name + "__out16"], [o.name], to=F32,
                                                name=o.name + "__outcast"))
    del g.node[:]
    g.node.extend(rewritten + outputs_fix)
    del g.initializer[:]
    g.initializer.extend(new_inits.values())
    del g.value_info[:]
    model = shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


# ---- graph specs -----------------------------------------------------------------------------------------------
def _kv_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]


def _text_sizes(cfg: dict) -> dict:
    if cfg["text_decoder"] == "git_decoder":
        c = cfg["git_decoder"]
        return {"layers": c["num_layers"], "heads": c["num_heads"], "head_dim": c["hidden_size"] // c["num_heads"],
                "visual_dim": c["visual_dim"]}
    c = cfg["t5"]
    return {"layers": c["num_decoder_layers"], "heads": c["num_heads"], "head_dim": c["d_kv"],
            "visual_dim": c["d_model"]}


def sam_channels(cfg: dict) -> int:
    """Width of the SAM feature map the mask decoder reads (the SAM neck's output channels; 256 in SAM ViT-B)."""
    fs = cfg["feature_fusion"]
    return fs["input_channels"][fs["feature_keys"].index("sam_image_encoder")]


def example_inputs(group: str, cfg: dict, *, n: int = 2, prompts: int = 2, context: int = 3, text: int = 4,
                   past: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes/types for `group` (used for tracing and for the checks)."""
    g = torch.Generator().manual_seed(seed)
    s = cfg["image_size"]
    fs = cfg["feature_fusion"]
    grid, ch = fs["output_size"], fs["out_channels"]
    sam_grid = fs["input_sizes"][fs["feature_keys"].index("sam_image_encoder")]
    tokens_per_prompt = cfg["prompt_adapter"]["num_outputs"]
    ts = _text_sizes(cfg)
    vocab = cfg["vocab_size"]

    def boxes(b, p):
        xy = torch.rand(b, p, 2, generator=g) * s * 0.6
        wh = torch.rand(b, p, 2, generator=g) * s * 0.4 + 4
        return torch.cat([xy, xy + wh], dim=-1)

    def ids(*shape):
        return torch.randint(3, vocab, shape, generator=g)

    image_hw = torch.tensor([[s * 0.8, float(s)]] * n)
    if group == "image_encoder":
        mask = torch.ones(n, s, s)
        mask[-1, int(s * 0.75):] = 0
        return {"images": torch.rand(n, s, s, 3, generator=g) * 255 * mask[..., None], "padding_mask": mask}
    if group == "prompt_adapter":
        return {"features": torch.randn(n, grid, grid, ch, generator=g), "boxes": boxes(n, prompts)}
    if group == "proposal_head":
        return {"features": torch.randn(n, grid, grid, ch, generator=g)}
    if group == "mask_decoder":
        dt = cfg["git_decoder"]["hidden_size"] if cfg["text_decoder"] == "git_decoder" else cfg["t5"]["d_model"]
        return {"sam_features": torch.randn(n, sam_grid, sam_grid, sam_channels(cfg), generator=g),
                "boxes": boxes(n, prompts),
                "visual_tokens": torch.randn(n, prompts, tokens_per_prompt, ts["visual_dim"], generator=g),
                "text_hidden": torch.randn(n, prompts, text, dt, generator=g)}
    ctx = ids(n, context)
    ctx[0, -1] = 0   # a padded context token
    if group in ("decoder_prefill", "decoder_forward"):
        return {"visual_tokens": torch.randn(n, tokens_per_prompt, ts["visual_dim"], generator=g),
                "context_tokens": ctx, "text_tokens": ids(n, text), "image_hw": image_hw}
    if group == "decoder_step":
        h, dh = ts["heads"], ts["head_dim"]
        bias = torch.zeros(n, past)
        bias[:, past - 5:] = float("-inf") if cfg["text_decoder"] == "git_decoder" else MASK_BIAS
        out = {"tokens": ids(n), "position": torch.tensor([3] * n), "image_hw": image_hw, "past_key_bias": bias}
        if cfg["text_decoder"] == "t5":
            enc = tokens_per_prompt + context
            eb = torch.zeros(n, enc)
            eb[0, -1] = MASK_BIAS
            out["encoder_key_bias"] = eb
        for name in _kv_names("past", ts["layers"]):
            out[name] = torch.randn(n, h, past, dh, generator=g)
        if cfg["text_decoder"] == "t5":
            for name in _kv_names("cross", ts["layers"]):
                out[name] = torch.randn(n, h, tokens_per_prompt + context, dh, generator=g)
        return out
    raise ValueError(f"unknown graph group {group!r}")


def graph_spec(group: str, cfg: dict, mods: dict) -> tuple[nn.Module, list[str], list[str], dict]:
    """(module, input names, output names, dynamic axes) of one group."""
    t5 = cfg["text_decoder"] == "t5"
    layers = _text_sizes(cfg)["layers"]
    if group == "image_encoder":
        return (ImageEncoderGraph(mods), ["images", "padding_mask"], ["features", "sam_features"],
                {"images": {0: "batch"}, "padding_mask": {0: "batch"}, "features": {0: "batch"},
                 "sam_features": {0: "batch"}})
    if group == "prompt_adapter":
        return (PromptAdapterGraph(mods, cfg), ["features", "boxes"], ["visual_tokens"],
                {"features": {0: "batch"}, "boxes": {0: "batch", 1: "prompts"},
                 "visual_tokens": {0: "batch", 1: "prompts"}})
    if group == "mask_decoder":
        return (MaskDecoderGraph(mods, cfg), ["sam_features", "boxes", "visual_tokens", "text_hidden"],
                ["mask_logits", "iou"],
                {"sam_features": {0: "batch"}, "boxes": {0: "batch", 1: "prompts"},
                 "visual_tokens": {0: "batch", 1: "prompts"}, "text_hidden": {0: "batch", 1: "prompts", 2: "text"},
                 "mask_logits": {0: "batch", 1: "prompts"}, "iou": {0: "batch", 1: "prompts"}})
    if group == "proposal_head":
        return (ProposalHeadGraph(mods), ["features"], ["heatmap", "box_regs"],
                {"features": {0: "batch"}, "heatmap": {0: "batch"}, "box_regs": {0: "batch"}})
    heads_out = ["logits", "hidden", "corners", "point_logits"]
    if group == "decoder_prefill":
        ins = ["visual_tokens", "context_tokens", "text_tokens", "image_hw"]
        outs = heads_out + ["key_bias"] + _kv_names("present", layers)
        kv_len = "text" if t5 else "prefix_text"
        dyn = {"visual_tokens": {0: "rows"}, "context_tokens": {0: "rows", 1: "context"},
               "text_tokens": {0: "rows", 1: "text"}, "image_hw": {0: "rows"},
               "logits": {0: "rows", 1: "text"}, "hidden": {0: "rows", 1: "text"}, "corners": {0: "rows", 1: "text"},
               "point_logits": {0: "rows", 1: "text"}, "key_bias": {0: "rows", 1: kv_len}}
        dyn.update({n: {0: "rows", 2: kv_len} for n in _kv_names("present", layers)})
        if t5:
            outs += ["encoder_key_bias"] + _kv_names("cross", layers)
            dyn["encoder_key_bias"] = {0: "rows", 1: "encoder"}
            dyn.update({n: {0: "rows", 2: "encoder"} for n in _kv_names("cross", layers)})
        mod = T5PrefillGraph(mods, cfg) if t5 else GitPrefillGraph(mods)
        return mod, ins, outs, dyn
    if group == "decoder_forward":
        if not t5:
            raise ValueError("decoder_forward is exported for T5 only (GIT's forward equals decoder_prefill)")
        ins = ["visual_tokens", "context_tokens", "text_tokens", "image_hw"]
        dyn = {"visual_tokens": {0: "rows"}, "context_tokens": {0: "rows", 1: "context"},
               "text_tokens": {0: "rows", 1: "text"}, "image_hw": {0: "rows"}}
        dyn.update({o: {0: "rows", 1: "text"} for o in heads_out})
        return T5ForwardGraph(mods, cfg), ins, heads_out, dyn
    if group == "decoder_step":
        ins = ["tokens", "position", "image_hw", "past_key_bias"] + (["encoder_key_bias"] if t5 else []) + \
            _kv_names("past", layers) + (_kv_names("cross", layers) if t5 else [])
        outs = heads_out + _kv_names("present", layers)
        dyn = {n: {0: "rows"} for n in ins + outs}
        dyn["past_key_bias"] = {0: "rows", 1: "past"}
        dyn.update({n: {0: "rows", 2: "past"} for n in _kv_names("past", layers)})
        if t5:
            dyn["encoder_key_bias"] = {0: "rows", 1: "encoder"}
            dyn.update({n: {0: "rows", 2: "encoder"} for n in _kv_names("cross", layers)})
        mod = T5StepGraph(mods, cfg) if t5 else GitStepGraph(mods)
        return mod, ins, outs, dyn
    raise ValueError(f"unknown graph group {group!r}")


def export_group(group: str, cfg: dict, mods: dict, path: str | Path, opset: int = OPSET) -> list[str]:
    """Exports one group to `path` (float32); returns its output names."""
    import onnx

    module, ins, outs, dyn = graph_spec(group, cfg, mods)
    example = example_inputs(group, cfg)
    args = tuple(example[n] for n in ins)
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, str(path), input_names=ins, output_names=outs, dynamic_axes=dyn,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    got = [o.name for o in model.graph.output]
    if got != outs:
        raise RuntimeError(f"{group}: exported outputs {got} differ from {outs}")
    return outs


def export_all(cfg: dict, tensors: dict[str, np.ndarray], out_dir: str | Path, fp16: bool = False,
               opset: int = OPSET, groups=None) -> dict[str, Path]:
    """Writes <group>.onnx (or <group>.fp16.onnx) for every group (default: model_groups(cfg)) +
    onnx_manifest.json (or onnx_manifest.fp16.json); returns the paths."""
    groups = model_groups(cfg) if groups is None else tuple(groups)
    missing = [g for g in groups if g in OPTIONAL_GROUPS and g not in cfg]
    if missing:
        raise ValueError(f"the model has no {missing} component(s) to export")
    if cfg["text_decoder"] != "t5" and any(g in T5_GROUPS for g in groups):
        raise ValueError(f"{T5_GROUPS} are exported for a T5 text decoder only")
    import hashlib

    import onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mods = build_modules(cfg, tensors)
    paths, manifest = {}, {"opset": opset, "precision": "fp16" if fp16 else "fp32", "graphs": {}}
    for group in groups:
        path = out / (f"{group}.fp16.onnx" if fp16 else f"{group}.onnx")
        export_group(group, cfg, mods, path, opset)
        if fp16:
            onnx.save(convert_float16(onnx.load(str(path))), str(path))
        model = onnx.load(str(path))
        manifest["graphs"][group] = {
            "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
        paths[group] = path
    # One manifest per precision (an fp16 export next to the fp32 one must not overwrite its manifest).
    (out / ("onnx_manifest.fp16.json" if fp16 else "onnx_manifest.json")).write_text(json.dumps(manifest, indent=1) + "\n")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pixelllm_ref.export_onnx", description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--fp16", action="store_true", help="float16 weights/activations (LN, softmax kept float32)")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--groups", default=None, help="comma-separated subset of "
                    + ",".join(GROUPS + T5_GROUPS + OPTIONAL_GROUPS)
                    + " (default: every group the model has)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    groups = None if a.groups is None else [g for g in a.groups.split(",") if g]
    unknown = [g for g in groups or () if g not in GROUPS + T5_GROUPS + OPTIONAL_GROUPS]
    if unknown:
        ap.error(f"unknown groups {unknown}")
    cfg, tensors = load_model_dir(a.model_dir)
    for group, path in export_all(cfg, tensors, a.out_dir, fp16=a.fp16, opset=a.opset, groups=groups).items():
        print(f"{group}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
