"""Decoding vs the official outputs, and the incremental (KV cache) path vs the official full recompute.

Golden: greedy caption (`with_cap=True`: no context tokens, as in the official eval batch) and the referring path
(`with_cap=False`: input text teacher-forced with the `where is ...` context), on the golden visual tokens.
Toy: the official greedy_decode / beam_search were run (jax, outside this repo) on a 2-row toy decoder whose logits
at position p are TOK[x[p]] + POS[p]; their outputs are pinned below.
"""
import numpy as np
import pytest
import torch
from test_text import build, inputs

from pixelllm_ref import decoding
from pixelllm_ref.golden import rel_l2

TOL = 1e-4
STEP_TOL = 1e-5


def _run(golden, **kw):
    g, cfg, _, _, dec, ph = build(golden.name)
    vis, tok, hw = inputs(g)
    return g, cfg, dec, ph, vis, tok, hw, dict(bos_id=cfg["bos_token_id"], eos_id=cfg["eos_token_id"],
                                                max_len=cfg["max_caption_length"], **kw)


@pytest.mark.parametrize("use_cache", [True, False])
def test_caption_matches_official(golden, use_cache):
    g, cfg, dec, ph, vis, _, hw, kw = _run(golden)
    o = g.outputs
    r = decoding.text_inference(dec, ph, vis, None, hw, point_output_ignore=cfg["point_head"]["point_output_ignore"],
                                use_cache=use_cache, **kw)
    assert r["text_tokens"].numpy().tolist() == o["cap_text_tokens"][:, 0].tolist()
    errs = {"cap_log_probs": rel_l2(r["log_probs"], o["cap_log_probs"][:, 0]),
            "cap_point_coords": rel_l2(r["point_coords"], o["cap_point_coords"][:, 0]),
            "cap_point_logits": rel_l2(r["point_logits"], o["cap_point_logits"][:, 0])}
    print(golden.name, errs)
    assert all(e <= TOL for e in errs.values()), errs
    assert (r["point_valid_mask"].numpy() == o["cap_point_valid_mask"][:, 0]).all()
    assert np.abs(r["detection_boxes"].numpy() - o["cap_detection_boxes"][:, 0]).max() <= 0.01


def test_referring_matches_official(golden):
    g, cfg, dec, ph, vis, tok, hw, kw = _run(golden)
    o = g.outputs
    ctx = torch.from_numpy(g.inputs["context_tokens"][:, 0]).long()
    r = decoding.text_inference(dec, ph, vis, ctx, hw, point_output_ignore=cfg["point_head"]["point_output_ignore"],
                                text_tokens=tok, **kw)
    assert r["text_tokens"].numpy().tolist() == o["ref_text_tokens"][:, 0].tolist()
    errs = {"ref_point_coords": rel_l2(r["point_coords"], o["ref_point_coords"][:, 0]),
            "ref_point_logits": rel_l2(r["point_logits"], o["ref_point_logits"][:, 0])}
    print(golden.name, errs)
    assert all(e <= TOL for e in errs.values()), errs
    assert (r["point_valid_mask"].numpy() == o["ref_point_valid_mask"][:, 0]).all()
    assert np.abs(r["detection_boxes"].numpy() - o["ref_detection_boxes"][:, 0]).max() <= 0.01


def _steps_equal(a, b):
    assert len(a) == len(b) and len(a) > 0
    for i, (x, y) in enumerate(zip(a, b)):
        assert rel_l2(x, y) <= STEP_TOL, (i, rel_l2(x, y))


@pytest.mark.parametrize("with_context", [False, True])
def test_greedy_cache_equals_full_recompute(golden, with_context):
    g, _, dec, _, vis, _, _, kw = _run(golden)
    vis = torch.cat([vis, vis.flip(1)])    # 2 rows
    ctx = torch.from_numpy(g.inputs["context_tokens"][:, 0]).long() if with_context else None
    if ctx is not None:
        ctx = torch.cat([ctx, ctx.roll(2, dims=1)])
    a = decoding.greedy_decode(dec, vis, ctx, use_cache=True, record=True, **kw)
    b = decoding.greedy_decode(dec, vis, ctx, use_cache=False, record=True, **kw)
    assert a.tokens.tolist() == b.tokens.tolist()
    assert rel_l2(a.log_probs, b.log_probs) <= STEP_TOL
    _steps_equal(a.step_logits, b.step_logits)
    _steps_equal(a.step_hidden, b.step_hidden)


@pytest.mark.parametrize("beam,per_node", [(3, 2), (2, 1)])
def test_beam_cache_equals_full_recompute(golden, beam, per_node):
    g, _, dec, _, vis, _, _, kw = _run(golden)
    ctx = torch.from_numpy(g.inputs["context_tokens"][:, 0]).long()
    res = [decoding.beam_search(dec, vis, ctx, beam_size=beam, per_node_beam_size=per_node, use_cache=c,
                                record=True, **kw) for c in (True, False)]
    assert res[0].beam_tokens.tolist() == res[1].beam_tokens.tolist()
    assert rel_l2(res[0].beam_scores, res[1].beam_scores) <= STEP_TOL
    _steps_equal(res[0].step_logits, res[1].step_logits)
    assert res[0].tokens.tolist() == res[0].beam_tokens[:, -1].tolist()


def test_step_equals_full_forward_on_any_tokens(golden):
    """Teacher-forced steps over tokens with padding (0) and EOS inside equal the official full recompute on the
    decode buffer (written tokens, then EOS placeholders)."""
    g, cfg, dec, _, vis, _, _, kw = _run(golden)
    eos, n = kw["eos_id"], kw["max_len"]
    seq = torch.tensor([[kw["bos_id"], 5, 0, 7, eos, 9, 0, 0, 11, 12, eos, 3, 4, 0, 6, 8]])[:, :n]
    ctx = torch.from_numpy(g.inputs["context_tokens"][:, 0]).long()
    state = dec.prefill(vis, ctx, n)
    with torch.no_grad():
        for p in range(n - 1):   # decode loops read positions 0..max_len-3; T5 refuses the last one
            lg, hd = dec.step(state, seq[:, p], p)
            buf = torch.full_like(seq, eos)
            buf[:, :p + 1] = seq[:, :p + 1]
            full_lg, full_hd = dec(vis, ctx, buf)
            assert rel_l2(lg, full_lg[:, p]) <= STEP_TOL, p
            assert rel_l2(hd, full_hd[:, p]) <= STEP_TOL, p


def test_t5_refuses_last_position():
    _, _, dec, _, vis, _, _, kw = _run(type("G", (), {"name": "t5_s0_h384"}))
    state = dec.prefill(vis, None, kw["max_len"])
    with pytest.raises(ValueError, match="last position"):
        dec.step(state, torch.tensor([kw["bos_id"]]), kw["max_len"] - 1)


def test_git_max_len_beyond_positions_raises():
    _, _, dec, _, vis, _, _, _ = _run(type("G", (), {"name": "bert_s0_h384"}))
    with pytest.raises(ValueError, match="position table"):
        dec.prefill(vis, None, dec.c["max_positions"] + 1)


# ---- toy decoder vs the official decode functions --------------------------------------------------------------
V, L, BOS, EOS = 11, 9, 3, 1
_rs = np.random.RandomState(0)
TOK = (_rs.randn(V, V) * 2).astype(np.float32)
POS = (_rs.randn(L, V) * 2).astype(np.float32)
POS[:5, EOS] -= 3.0
TOK[4, 4] += 0.5

# Outputs of the official auto_regressive_decode.greedy_decode / beam_search (scenic 4a38d475) on this toy,
# begin tokens [[3, 1, ...], [4, 1, ...]], alpha 0.6.
OFFICIAL = {
    "greedy": ([[3, 10, 3, 4, 7, 5, 2, 7, 1], [4, 7, 9, 1, 1, 1, 1, 1, 1]], [-0.4817526638507843, -0.9855144619941711]),
    (3, 2): ([[[3, 10, 3, 4, 7, 8, 3, 10, 1], [3, 10, 3, 4, 7, 7, 8, 7, 1], [3, 10, 3, 4, 7, 7, 8, 9, 1]],
              [[0] * 9, [4, 6, 6, 1, 1, 1, 1, 1, 1], [4, 7, 9, 1, 1, 1, 1, 1, 1]]],
             [[-4.133943557739258, -4.085307598114014, -1.4296848773956299],
              [-10000000.0, -3.3494699001312256, -1.721004605293274]]),
    (3, 1): ([[[3, 10, 3, 4, 7, 8, 3, 10, 1], [3, 10, 3, 4, 7, 7, 8, 7, 1], [3, 10, 3, 4, 7, 7, 8, 9, 1]],
              [[0] * 9, [0] * 9, [4, 7, 9, 1, 1, 1, 1, 1, 1]]],
             [[-4.133943557739258, -4.085307598114014, -1.4296848773956299],
              [-10000000.0, -10000000.0, -1.721004605293274]]),
    (2, 2): ([[[3, 10, 3, 4, 7, 7, 8, 7, 1], [3, 10, 3, 4, 7, 7, 8, 9, 1]], [[0] * 9, [4, 7, 9, 1, 1, 1, 1, 1, 1]]],
             [[-4.085307598114014, -1.4296848773956299], [-10000000.0, -1.721004605293274]]),
    (4, 2): ([[[0] * 9, [0] * 9, [0] * 9, [3, 10, 9, 1, 1, 1, 1, 1, 1]],
              [[0] * 9, [4, 7, 4, 1, 1, 1, 1, 1, 1], [4, 6, 6, 1, 1, 1, 1, 1, 1], [4, 7, 9, 1, 1, 1, 1, 1, 1]]],
             [[-10000000.0, -10000000.0, -10000000.0, -2.8465983867645264],
              [-10000000.0, -3.369194269180298, -3.3494699001312256, -1.721004605293274]]),
}


class ToyDecoder:
    """logits[p] = TOK[x[p]] + POS[p]; the 'cache' stores the fed tokens so that reorder is exercised."""

    def forward(self, visual, context, tokens):
        lg = torch.from_numpy(TOK)[tokens] + torch.from_numpy(POS)[None, :tokens.shape[1]]
        return lg, lg

    def prefill(self, visual, context, max_len):
        return {"tok": torch.full((visual.shape[0], max_len), -1, dtype=torch.long)}

    def step(self, state, tokens, position):
        state["tok"][:, position] = tokens
        assert (state["tok"][:, :position + 1] >= 0).all()
        lg = torch.from_numpy(TOK)[state["tok"][:, position]] + torch.from_numpy(POS)[position]
        return lg, lg

    def reorder(self, state, index):
        state["tok"] = state["tok"].index_select(0, index)


def _toy_decode(fn, **kw):
    vis = torch.zeros(2, 1, 1)
    dec = ToyDecoder()
    orig = decoding.begin_tokens

    def begin(n, max_len, bos_id, eos_id, device=None):   # row 1 starts with 4 (as in the pinned official run)
        t = orig(n, max_len, bos_id, eos_id, device)
        t[1, 0] = 4
        return t

    decoding.begin_tokens = begin
    try:
        return [fn(dec, vis, None, bos_id=BOS, eos_id=EOS, max_len=L, use_cache=c, **kw) for c in (True, False)]
    finally:
        decoding.begin_tokens = orig


def test_toy_greedy_matches_official():
    for r in _toy_decode(decoding.greedy_decode):
        assert r.tokens.tolist() == OFFICIAL["greedy"][0]
        assert np.allclose(r.log_probs.numpy(), OFFICIAL["greedy"][1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("beam,per_node", [(3, 2), (3, 1), (2, 2), (4, 2)])
def test_toy_beam_matches_official(beam, per_node):
    seqs, scores = OFFICIAL[(beam, per_node)]
    for r in _toy_decode(decoding.beam_search, beam_size=beam, per_node_beam_size=per_node):
        assert r.beam_tokens.tolist() == seqs
        assert np.allclose(r.beam_scores.numpy(), scores, rtol=1e-6, atol=0)


def test_streamed_hidden_equals_recomputed_text_feats(golden):
    """Per-token points can be streamed from the step hidden states: up to the token before the first EOS they
    equal the official recompute on the cleaned caption (prepare_text_features)."""
    g, _, dec, _, vis, _, _, kw = _run(golden)
    r = decoding.greedy_decode(dec, vis, None, **kw)
    tokens = decoding.clean_after_eos(r.tokens, kw["eos_id"])
    first_eos = int((tokens[0] == kw["eos_id"]).nonzero()[0, 0])
    with torch.no_grad():
        _, full = dec(vis, None, tokens)
        state = dec.prefill(vis, None, kw["max_len"])
        for p in range(first_eos):
            _, h = dec.step(state, tokens[:, p], p)
            assert rel_l2(h, full[:, p]) <= STEP_TOL, p
