"""Caption decoding over a small text-decoder protocol (greedy and beam), with or without a KV cache.

Official semantics (pixel_llm/auto_regressive_decode.py + PixelLlmModel.autoregressive_predict / inference):
  * the token buffer starts as [BOS, EOS, EOS, ...] of length max_len (forward_caption's begin tokens); step
    `cur` = 1 .. max_len-2 reads the logits at position cur-1 and writes position cur, so the LAST position is
    never written (it keeps its EOS);
  * greedy: the previous token's logit becomes min(logit, -1e4); after an EOS the row is forced to EOS with
    log-prob 0; score = sum of the chosen log-probs / max(#(tokens != EOS) - 1, 1) (BOS counts);
  * beam (t5x-style): 2 * k (per_node_beam_size * k) candidates per step, finished beams leave the live set with
    -1e7, finished score = sum log-prob / ((5 + cur) / 6) ** alpha, stop when no live beam can beat the worst
    finished one; beams are returned in INCREASING score order (best = last). The official beam search has no
    repeat suppression; `no_repeat=True` adds the greedy rule (an addition, off by default).
Our additions: the incremental path (decoder.prefill once, then decoder.step per token, decoder.reorder for beams)
which equals the official full recompute (decoder.forward on the whole buffer each step) at every step; early exit
once every row has emitted EOS (the remaining official steps add log-prob 0 and write EOS over EOS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

REPEAT_LOGIT = -10000.0   # official greedy: scatter_min of the previous token to -1e4
BEAM_NEG_INF = -1.0e7     # official beam search NEG_INF


class TextDecoder(Protocol):
    """What both text heads (GitDecoder, T5) implement; the native runtime mirrors it.

    forward(visual (N,T,D), context (N,Lc) long | None, tokens (N,L) long) -> (logits (N,L,V), hidden (N,L,D))
        the official full computation (teacher forcing / full recompute).
    prefill(visual, context, max_len) -> state
        runs everything that does not depend on the text (GIT: the prefix through all layers; T5: the encoder and
        the cross-attention K/V) and preallocates the self-attention KV cache for max_len text positions.
    step(state, tokens (N,) long, position: int) -> (logits (N,V), hidden (N,D))
        feeds the text token at `position` (0 = BOS), writes its K/V into the cache, returns the outputs there.
    reorder(state, index (N,) long) -> None
        state rows := rows[index] (beam search).
    """

    def forward(self, visual: torch.Tensor, context: torch.Tensor | None, tokens: torch.Tensor): ...

    def prefill(self, visual: torch.Tensor, context: torch.Tensor | None, max_len: int) -> Any: ...

    def step(self, state: Any, tokens: torch.Tensor, position: int): ...

    def reorder(self, state: Any, index: torch.Tensor) -> None: ...


def begin_tokens(n: int, max_len: int, bos_id: int, eos_id: int, device=None) -> torch.Tensor:
    """Official inference begin tokens: (n, max_len) filled with EOS, BOS at position 0."""
    t = torch.full((n, max_len), eos_id, dtype=torch.long, device=device)
    t[:, 0] = bos_id
    return t


@dataclass
class GreedyResult:
    tokens: torch.Tensor                 # (N, max_len) long
    log_probs: torch.Tensor              # (N,) float32, official length-normalised score
    step_logits: list = field(default_factory=list)   # raw decoder logits (N, V) per executed step (record=True)
    step_hidden: list = field(default_factory=list)   # hidden (N, D) at position cur-1 per step (record=True)


def _logits_at(decoder: TextDecoder, state, visual, context, tokens, pos: int, use_cache: bool):
    if use_cache:
        return decoder.step(state, tokens[:, pos], pos)
    logits, hidden = decoder.forward(visual, context, tokens)
    return logits[:, pos], hidden[:, pos]


@torch.no_grad()
def greedy_decode(decoder: TextDecoder, visual: torch.Tensor, context: torch.Tensor | None, *, bos_id: int,
                  eos_id: int, max_len: int, use_cache: bool = True, record: bool = False) -> GreedyResult:
    """Official greedy_decode on begin_tokens(...). visual (N,T,D); context (N,Lc) or None."""
    if max_len < 2:
        raise ValueError("greedy_decode: max_len must be >= 2")
    n = visual.shape[0]
    tokens = begin_tokens(n, max_len, bos_id, eos_id, visual.device)
    state = decoder.prefill(visual, context, max_len) if use_cache else None
    total = torch.zeros(n, dtype=torch.float32, device=visual.device)
    res = GreedyResult(tokens, total)
    for cur in range(1, max_len - 1):
        last = tokens[:, cur - 1]
        if bool((last == eos_id).all()):
            break   # every row is finished: the official loop would add 0 and write EOS over EOS
        logits, hidden = _logits_at(decoder, state, visual, context, tokens, cur - 1, use_cache)
        if record:
            res.step_logits.append(logits.clone())
            res.step_hidden.append(hidden.clone())
        logits = logits.clone()
        rows = torch.arange(n, device=logits.device)
        logits[rows, last] = torch.minimum(logits[rows, last], torch.tensor(REPEAT_LOGIT))
        after_end = torch.full_like(logits, float("-inf"))
        after_end[:, eos_id] = 0.0
        logits = torch.where((last == eos_id)[:, None], after_end, logits)
        logp = torch.log_softmax(logits, dim=-1)
        best, ind = logp.max(dim=-1)     # first maximal index, like jnp.argmax
        tokens[:, cur] = ind
        total = total + best
    num_valid = ((tokens != eos_id).sum(dim=-1) - 1).clamp(min=1)
    res.tokens, res.log_probs = tokens, total / num_valid.to(total.dtype)
    return res


def _topk_stable(x: torch.Tensor, k: int):
    """lax.top_k: the k largest along the last axis, ties -> lower index first."""
    vals, idx = torch.sort(x, dim=-1, descending=True, stable=True)
    return vals[..., :k], idx[..., :k]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, K, ...) , idx (B, K2) -> (B, K2, ...)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]


def brevity_penalty(alpha: float, length: int) -> torch.Tensor:
    return torch.tensor((5.0 + length) / 6.0, dtype=torch.float32) ** alpha


@dataclass
class BeamResult:
    beam_tokens: torch.Tensor    # (N, K, max_len), increasing score order
    beam_scores: torch.Tensor    # (N, K)
    tokens: torch.Tensor         # (N, max_len) best (= beam_tokens[:, -1])
    log_probs: torch.Tensor      # (N,) best score
    step_logits: list = field(default_factory=list)  # raw logits (N*K, V) per executed step (record=True)


@torch.no_grad()
def beam_search(decoder: TextDecoder, visual: torch.Tensor, context: torch.Tensor | None, *, bos_id: int,
                eos_id: int, max_len: int, beam_size: int = 4, per_node_beam_size: int = 2, alpha: float = 0.6,
                use_cache: bool = True, no_repeat: bool = False, record: bool = False) -> BeamResult:
    """Official beam_search (auto_regressive_decode.py) on begin_tokens(...), visual/context repeated per beam."""
    b, k = visual.shape[0], beam_size
    dev = visual.device
    vis = visual.repeat_interleave(k, dim=0)
    ctx = context.repeat_interleave(k, dim=0) if context is not None else None
    live_seqs = begin_tokens(b, max_len, bos_id, eos_id, dev)[:, None].expand(b, k, max_len).clone()
    live_lp = torch.full((b, k), BEAM_NEG_INF, dtype=torch.float32, device=dev)
    live_lp[:, 0] = 0.0
    fin_scores = torch.full((b, k), BEAM_NEG_INF, dtype=torch.float32, device=dev)
    fin_seqs = torch.zeros(b, k, max_len, dtype=torch.long, device=dev)
    fin_flags = torch.zeros(b, k, dtype=torch.bool, device=dev)
    state = decoder.prefill(vis, ctx, max_len) if use_cache else None
    steps = []
    min_bp = brevity_penalty(alpha, max_len)
    cur = 1
    while cur < max_len - 1:
        best_live = live_lp[:, -1:] / min_bp
        worst_fin = torch.where(fin_flags, fin_scores.amin(dim=1, keepdim=True), BEAM_NEG_INF)
        if bool((worst_fin > best_live).all()):
            break
        flat = live_seqs.reshape(b * k, max_len)
        logits, _ = _logits_at(decoder, state, vis, ctx, flat, cur - 1, use_cache)
        if record:
            steps.append(logits.clone())
        if no_repeat:
            logits = logits.clone()
            rows = torch.arange(b * k, device=dev)
            last = flat[:, cur - 1]
            logits[rows, last] = torch.minimum(logits[rows, last], torch.tensor(REPEAT_LOGIT))
        vocab = logits.shape[-1]
        cand = torch.log_softmax(logits.view(b, k, vocab), dim=-1) + live_lp[..., None]
        topk_lp, topk_idx = _topk_stable(cand.reshape(b, k * vocab), per_node_beam_size * k)
        topk_ids, topk_beam = topk_idx % vocab, topk_idx // vocab
        topk_seq = _gather(live_seqs, topk_beam).clone()
        topk_seq[:, :, cur] = topk_ids
        newly_fin = topk_seq[:, :, cur] == eos_id
        new_lp = topk_lp + newly_fin.to(torch.float32) * BEAM_NEG_INF
        new_top = _topk_stable(new_lp, k)[1].flip(1)
        live_seqs, live_lp = _gather(topk_seq, new_top), _gather(new_lp, new_top)
        if use_cache:
            origin = _gather(topk_beam, new_top)
            decoder.reorder(state, (torch.arange(b, device=dev)[:, None] * k + origin).reshape(-1))
        new_scores = topk_lp / brevity_penalty(alpha, cur) + (~newly_fin).to(torch.float32) * BEAM_NEG_INF
        all_seqs = torch.cat([fin_seqs, topk_seq], dim=1)
        all_scores = torch.cat([fin_scores, new_scores], dim=1)
        all_flags = torch.cat([fin_flags, newly_fin], dim=1)
        top = _topk_stable(all_scores, k)[1].flip(1)
        fin_seqs, fin_scores, fin_flags = _gather(all_seqs, top), _gather(all_scores, top), _gather(all_flags, top)
        cur += 1
    any_fin = fin_flags.any(dim=1)
    seqs = torch.where(any_fin[:, None, None], fin_seqs, live_seqs)
    scores = torch.where(any_fin[:, None], fin_scores, live_lp)
    return BeamResult(seqs, scores, seqs[:, -1], scores[:, -1], steps)


def clean_after_eos(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Official prepare_text_features: every token after the first EOS becomes 0 (padding)."""
    return torch.where(torch.cumsum((tokens == eos_id).long(), dim=-1) <= 1, tokens, torch.zeros_like(tokens))


@torch.no_grad()
def text_inference(decoder: TextDecoder, point_model, visual: torch.Tensor, context: torch.Tensor | None,
                   image_hw: torch.Tensor, *, bos_id: int, eos_id: int, max_len: int, point_output_ignore: str,
                   text_tokens: torch.Tensor | None = None, method: str = "greedy", beam_size: int = 1,
                   per_node_beam_size: int = 2, alpha: float = 0.6, use_cache: bool = True) -> dict:
    """The text part of official PixelLlmModel.inference for N prompts (rows).

    with_cap (text_tokens None): decode (autoregressive_predict), else the given tokens are teacher-forced (the
    RefCOCO path). Then prepare_text_features (clean after EOS, full forward for the hidden states), predict_points
    (point head in pixels of the unpadded image (N, 2) = (h, w); valid mask from point_output_ignore) and
    add_point_detection (box from the valid points). Returns tensors with a leading N.
    """
    from .point_head import boxes_from_points, token_valid_mask

    out = {}
    if text_tokens is None:
        if method == "greedy":
            if beam_size != 1:
                raise ValueError("text_inference: greedy decoding needs beam_size 1")
            r = greedy_decode(decoder, visual, context, bos_id=bos_id, eos_id=eos_id, max_len=max_len,
                              use_cache=use_cache)
        elif method == "beam":
            r = beam_search(decoder, visual, context, bos_id=bos_id, eos_id=eos_id, max_len=max_len,
                            beam_size=beam_size, per_node_beam_size=per_node_beam_size, alpha=alpha,
                            use_cache=use_cache)
            out["beam_text_tokens"], out["beam_log_probs"] = r.beam_tokens, r.beam_scores
        else:
            raise ValueError(f"text_inference: unknown method {method!r}")
        text_tokens, out["log_probs"] = r.tokens, r.log_probs
    tokens = clean_after_eos(text_tokens, eos_id)
    _, feats = decoder.forward(visual, context, tokens)
    coords, logits = point_model(feats, image_hw)
    valid = token_valid_mask(tokens, point_output_ignore, bos_id, eos_id)
    out.update(text_tokens=tokens, text_feats=feats, point_coords=coords, point_logits=logits,
               point_valid_mask=valid, detection_boxes=boxes_from_points(coords[:, None], valid[:, None])[:, 0])
    return out
