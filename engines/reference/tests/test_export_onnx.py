"""ONNX exports (pixelllm_ref.export_onnx) run by onnxruntime vs the PyTorch reference on the tiny golden weights.

fp32: relative L2 <= 1e-5 per tensor against the reference's own API (prefill/step, visual_tokens, ...), and the
official golden outputs within the project tolerance 1e-4 where they exist.
fp16: relative L2 <= 1e-2. Why: float16 rounds every stored activation/weight with unit roundoff 2**-11 = 4.9e-4;
through these graphs (2-4 residual blocks, LayerNorm/softmax kept float32) the measured errors are 3e-4..1.3e-3,
errors grow roughly linearly with depth, so 1e-2 leaves ~8x margin for the tiny models while a mistyped op
(softmax over -inf rows, LayerNorm statistics in float16, a saturated mask) gives errors of order 1 or NaN.
"""
import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pixelllm_ref import convert, export_onnx as E
from pixelllm_ref.golden import rel_l2
from pixelllm_ref.point_head import image_shape_from_padding_mask

from conftest import _golden

CASES = ("bert_s1_h300", "t5_s0_h384")   # both text heads; a padded and a square image
TOL, TOL16, GOLDEN_TOL = 1e-5, 1e-2, 1e-4


@functools.lru_cache(maxsize=None)
def model(name):
    g = _golden(name)
    cfg, tensors = convert.convert(g.params, g.official_config)
    return g, cfg, tensors, E.build_modules(cfg, tensors)


@functools.lru_cache(maxsize=None)
def session(name, group, fp16=False):
    g, cfg, tensors, mods = model(name)
    d = Path(tempfile.mkdtemp(prefix="pixelllm_onnx_"))
    path = d / f"{group}.onnx"
    E.export_group(group, cfg, mods, path)
    if fp16:
        m = E.convert_float16(onnx.load(str(path)))
        path = d / f"{group}.fp16.onnx"
        onnx.save(m, str(path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess, path


def run(name, group, feeds, fp16=False):
    sess, _ = session(name, group, fp16)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(None, {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in feeds.items()})
    return dict(zip(names, got))


def close(got, want, tol=TOL, what=""):
    want = want.detach().numpy() if torch.is_tensor(want) else np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = rel_l2(got, want)
    assert err <= tol, f"{what}: rel L2 {err:.3e} > {tol}"
    return err


# ---- image side --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bert_s1_h300"])   # head-independent; the padded image
def test_image_encoder(name):
    g, cfg, _, mods = model(name)
    img = torch.from_numpy(g.inputs["images"])
    mask = torch.from_numpy(g.inputs["padding_mask"])
    images = torch.cat([img, img.flip(2)])            # batch 2 (dynamic batch, traced with 2 random images)
    masks = torch.cat([mask, mask.flip(2)])
    out = run(name, "image_encoder", {"images": images, "padding_mask": masks})
    with torch.no_grad():
        sam = mods["sam_image_encoder"](images, masks)
        fused = mods["feature_fusion"](eva02_encoder=mods["eva02_encoder"](images, masks), sam_image_encoder=sam)
    close(out["features"], fused, what="features")
    close(out["sam_features"], sam, what="sam_features")
    c = g.outputs["git_visual_features"].shape[-1]
    close(out["features"][:1, ..., :c], g.outputs["git_visual_features"], GOLDEN_TOL, "golden eva02")
    close(out["sam_features"][:1], g.outputs["sam_visual_features"], GOLDEN_TOL, "golden sam")


@pytest.mark.parametrize("name", CASES)
def test_prompt_adapter(name):
    from pixelllm_ref.prompt_adapter import visual_tokens

    g, cfg, _, mods = model(name)
    fused = mods["feature_fusion"](eva02_encoder=torch.from_numpy(g.outputs["git_visual_features"]),
                                   sam_image_encoder=torch.from_numpy(g.outputs["sam_visual_features"]))
    golden_box = torch.from_numpy(g.inputs["prompt_boxes"])
    boxes = torch.cat([golden_box, torch.tensor([[[0.0, 0.0, 0.0, 0.0], [20.0, 30.0, 200.0, 150.0]]])], dim=1)
    out = run(name, "prompt_adapter", {"features": fused, "boxes": boxes})["visual_tokens"]
    with torch.no_grad():
        want = visual_tokens(mods["prompt_encoder"], mods["prompt_adapter"], fused, boxes, (cfg["image_size"],) * 2)
    close(out, want, what="visual_tokens (3 prompts, one invalid box)")
    close(out[:, :1], g.outputs["tf_visual_features"], GOLDEN_TOL, "golden visual tokens")


@pytest.mark.parametrize("name", ["t5_s0_h384"])     # the bert case is covered by test_fp16_graphs
def test_mask_decoder(name):
    g, cfg, _, mods = model(name)
    gen = torch.Generator().manual_seed(3)
    sam = torch.from_numpy(g.outputs["sam_visual_features"])
    vis = torch.from_numpy(g.outputs["tf_visual_features"]).repeat(1, 2, 1, 1)
    text = torch.from_numpy(g.outputs["tf_text_feats"])[:, None].repeat(1, 2, 1, 1)
    boxes = torch.tensor([[[10.0, 20.0, 300.0, 250.0], [100.0, 50.0, 180.0, 300.0]]])
    out = run(name, "mask_decoder", {"sam_features": sam, "boxes": boxes, "visual_tokens": vis, "text_hidden": text})
    pe, size = mods["prompt_encoder"], (cfg["image_size"],) * 2
    with torch.no_grad():
        sparse = mods["mask_adapter"](pe.embed_boxes(boxes, size), vis, text)
        masks, iou = mods["mask_decoder"].predict(sam, pe.get_dense_pe(*sam.shape[1:3]), sparse, pe.dense_embedding())
    close(out["mask_logits"], masks[:, :, 0], what="mask_logits")
    close(out["iou"], iou[:, :, 0], what="iou")
    # dynamic text length / prompt count
    out = run(name, "mask_decoder", {"sam_features": sam, "boxes": boxes[:, :1], "visual_tokens": vis[:, :1],
                                     "text_hidden": torch.randn(1, 1, 5, text.shape[-1], generator=gen)})
    assert out["mask_logits"].shape == (1, 1, 4 * sam.shape[1], 4 * sam.shape[2])


# ---- text side ---------------------------------------------------------------------------------------------------
def _text_inputs(g, cfg):
    vis = torch.from_numpy(g.outputs["tf_visual_features"][:, 0])
    ctx = torch.from_numpy(g.inputs["context_tokens"][:, 0]).long()
    tok = torch.from_numpy(g.inputs["text_tokens"][:, 0]).long()
    hw = image_shape_from_padding_mask(torch.from_numpy(g.inputs["padding_mask"]))
    return vis, ctx, tok, hw


def _reference_steps(dec, head, vis, ctx, tokens, hw, max_len):
    """Reference incremental API: prefill + step per token -> stacked logits, hidden, corners."""
    state = dec.prefill(vis, ctx, max_len)
    logits, hidden = [], []
    for j in range(tokens.shape[1]):
        lo, hi = dec.step(state, tokens[:, j], j)
        logits.append(lo)
        hidden.append(hi)
    hidden = torch.stack(hidden, 1)
    corners, plogits = head(hidden, hw)
    return torch.stack(logits, 1), hidden, corners, plogits, state


@pytest.mark.parametrize("name", CASES)
def test_decoder_prefill_then_steps(name):
    """ONNX prefill over the first k tokens, then ONNX steps on a preallocated cache (the runtime's update rules),
    against the reference prefill + step at every position."""
    g, cfg, _, mods = model(name)
    head_name = cfg["text_decoder"]
    dec, head = mods[head_name], mods["point_head"]
    t5 = head_name == "t5"
    vis, ctx, tok, hw = _text_inputs(g, cfg)
    ctx = ctx[:, : int((ctx[0] > 0).sum()) + 2]          # keep two padding tokens (masked)
    n_total, k = tok.shape[1], 5
    layers = E._text_sizes(cfg)["layers"]
    with torch.no_grad():
        want = _reference_steps(dec, head, vis, ctx, tok, hw, n_total + 1)
    pre = run(name, "decoder_prefill", {"visual_tokens": vis, "context_tokens": ctx, "text_tokens": tok[:, :k],
                                        "image_hw": hw})
    for key, ref in zip(("logits", "hidden", "corners", "point_logits"), want):
        close(pre[key], ref[:, :k], what=f"prefill {key}")
    # the runtime's cache: capacity C, prefill entries copied in, the rest masked
    masked = t5 and -1e10 or float("-inf")
    lk = pre["key_bias"].shape[1]
    base = 0 if t5 else lk - k                           # GIT cache = prefix + text
    cap = base + n_total + 3
    bias = np.full((1, cap), masked, np.float32)
    bias[:, :lk] = pre["key_bias"]
    cache = {}
    for i in range(layers):
        for kind in ("key", "value"):
            c = np.zeros((1,) + pre[f"present_{kind}.{i}"].shape[1:2] + (cap,) + pre[f"present_{kind}.{i}"].shape[3:],
                         np.float32)
            c[:, :, :lk] = pre[f"present_{kind}.{i}"]
            cache[f"past_{kind}.{i}"] = c
    extra = {}
    if t5:
        extra["encoder_key_bias"] = pre["encoder_key_bias"]
        extra.update({f"cross_{kind}.{i}": pre[f"cross_{kind}.{i}"] for i in range(layers) for kind in ("key", "value")})
    for p in range(k, n_total):
        t = tok[:, p].numpy()
        if t5:
            bias[:, base + p - 1] = np.where(t == 0, -1e10, 0.0)   # official rule: key p-1 valid iff token p != 0
        out = run(name, "decoder_step", {"tokens": t, "position": np.array([p]), "image_hw": hw,
                                         "past_key_bias": bias, **cache, **extra})
        for key, ref in zip(("logits", "hidden", "corners", "point_logits"), want):
            close(out[key], ref[:, p], what=f"step {p} {key}")
        for i in range(layers):
            for kind in ("key", "value"):
                cache[f"past_{kind}.{i}"][:, :, base + p] = out[f"present_{kind}.{i}"][:, :, 0]
        bias[:, base + p] = 0.0
    if not t5:   # the reference cache holds exactly what the runtime wrote
        state = want[4]
        np.testing.assert_allclose(cache["past_key.0"][:, :, :base + n_total], state.keys[0][:, :, :base + n_total].numpy(), atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_decoder_prefill_is_teacher_forcing(name):
    """Without context (one 0 token) the prefill over the golden caption is the official teacher-forced pass
    (T5: on every row before EOS; the official EOS row has no valid next token, so its query is masked)."""
    g, cfg, _, mods = model(name)
    dec, head = mods[cfg["text_decoder"]], mods["point_head"]
    vis, _, tok, hw = _text_inputs(g, cfg)
    pre = run(name, "decoder_prefill", {"visual_tokens": vis, "context_tokens": np.zeros((1, 1), np.int64),
                                        "text_tokens": tok, "image_hw": hw})
    with torch.no_grad():
        logits, hidden = dec(vis, None, tok)
    rows = tok.shape[1]
    if cfg["text_decoder"] == "t5":
        eos = int((tok[0] == cfg["eos_token_id"]).nonzero()[0, 0])
        rows = eos
    close(pre["logits"][:, :rows], logits[:, :rows], what="logits vs forward")
    close(pre["hidden"][:, :rows], hidden[:, :rows], what="hidden vs forward")
    close(pre["logits"][:, :rows], g.outputs["tf_text_logits"][:, :rows], GOLDEN_TOL, "golden logits")
    close(pre["corners"][:, :rows], g.outputs["tf_point_coords"][:, 0, :rows], GOLDEN_TOL, "golden corners")


def test_t5_decoder_forward_is_the_official_pass():
    """decoder_forward = t5.T5.forward (the official teacher-forced pass) on EVERY row, the rows from the EOS on
    included (they attend uniformly), with and without context; those rows are where decoder_prefill differs."""
    name = "t5_s0_h384"
    g, cfg, _, mods = model(name)
    dec, head = mods["t5"], mods["point_head"]
    vis, ctx, tok, hw = _text_inputs(g, cfg)
    assert E.model_groups(cfg)[:6] == E.GROUPS[:4] + ("mask_decoder", "decoder_forward")
    assert "decoder_forward" not in E.model_groups(model("bert_s0_h384")[1])
    eos = int((tok[0] == cfg["eos_token_id"]).nonzero()[0, 0])
    assert eos + 2 < tok.shape[1], "the golden row must have rows after the EOS"
    for context in (np.zeros((1, 1), np.int64), ctx.numpy()):
        feeds = {"visual_tokens": vis, "context_tokens": context, "text_tokens": tok, "image_hw": hw}
        fwd = run(name, "decoder_forward", feeds)
        with torch.no_grad():
            logits, hidden = dec(vis, torch.from_numpy(context), tok)
            corners, _ = head(hidden, hw)
        close(fwd["logits"], logits, what="logits vs forward (all rows)")
        close(fwd["hidden"], hidden, what="hidden vs forward (all rows)")
        close(fwd["corners"], corners, what="corners vs forward (all rows)")
    pre = run(name, "decoder_prefill", feeds)
    tail = rel_l2(pre["hidden"][:, eos:], fwd["hidden"][:, eos:])
    assert tail > 1e-3, f"decoder_prefill matches the official pass after EOS too ({tail:.1e}): the test proves nothing"
    # golden (official, no context): rows before EOS. After it the official rows attend uniformly over the
    # encoder keys, whose count differs between "no context" (T keys) and the graphs' one masked 0 token (T + 1).
    fwd = run(name, "decoder_forward", {"visual_tokens": vis, "context_tokens": np.zeros((1, 1), np.int64),
                                        "text_tokens": tok, "image_hw": hw})
    close(fwd["logits"][:, :eos], g.outputs["tf_text_logits"][:, :eos], GOLDEN_TOL, "golden logits")


def test_mask_decoder_any_sam_width():
    """The mask_decoder graph follows the model's SAM neck width (the committed fixture model's is 64, not 256)."""
    cfg, tensors = E.load_model_dir(Path(__file__).resolve().parents[3] / "test" / "fixtures" / "reference" / "model")
    assert E.sam_channels(cfg) == 64
    mods = E.build_modules(cfg, tensors)
    d = Path(tempfile.mkdtemp(prefix="pixelllm_onnx_"))
    E.export_group("mask_decoder", cfg, mods, d / "mask_decoder.onnx")
    module, ins, outs, _ = E.graph_spec("mask_decoder", cfg, mods)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(d / "mask_decoder.onnx"), so, providers=["CPUExecutionProvider"])
    for n, prompts, text in ((1, 1, 3), (2, 3, 6)):   # dynamic batch / prompts / text length
        feeds = E.example_inputs("mask_decoder", cfg, n=n, prompts=prompts, text=text, seed=n)
        assert feeds["sam_features"].shape[-1] == 64
        got = sess.run(None, {k: feeds[k].numpy() for k in ins})
        with torch.no_grad():
            want = module(*[feeds[k] for k in ins])
        for o, gv, wv in zip(outs, got, want):
            close(gv, wv, what=f"mask_decoder/{o}")


def test_t5_relpos_lookup_is_exact():
    from pixelllm_ref.t5 import relative_position_bucket

    _, cfg, _, _ = model("t5_s0_h384")
    rp = E._T5Relpos(cfg["t5"])
    rel = np.arange(-400, 401, dtype=np.int32)
    table = torch.arange(32, dtype=torch.float32)[:, None]
    for bidi in (True, False):
        want = relative_position_bucket(rel, bidi, 32, 128)
        got = rp.bias(table, torch.from_numpy(rel.astype(np.int64)), bidi)[:, 0].long().numpy()
        np.testing.assert_array_equal(got, want)


# ---- fp16 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", E.GROUPS + E.T5_GROUPS)
def test_fp16_graphs(group):
    name = "t5_s0_h384" if group.startswith("decoder") else "bert_s1_h300"
    _, cfg, _, mods = model(name)
    module, ins, outs, _ = E.graph_spec(group, cfg, mods)
    feeds = E.example_inputs(group, cfg, n=1, prompts=2, context=4, text=5, past=20, seed=7)
    with torch.no_grad():
        want = module(*[feeds[n] for n in ins])
    want = want if isinstance(want, tuple) else (want,)
    got = run(name, group, feeds, fp16=True)
    for o, w in zip(outs, want):
        w = w.numpy()
        fin = np.isfinite(w)
        assert np.array_equal(np.isfinite(got[o]), fin), f"{group}/{o}: non-finite values differ"
        if o.endswith("key_bias"):
            continue
        close(np.where(fin, got[o], 0), np.where(fin, w, 0), TOL16, f"fp16 {group}/{o}")
    m = onnx.load(str(session(name, group, True)[1]))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == f32 for v in list(m.graph.input) + list(m.graph.output)
               if v.type.tensor_type.elem_type in (f32, f16))
    types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
    for n in m.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(n.input[0], f32) == f32, n.name
    sizes = {dt: sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type == dt) for dt in (f32, f16)}
    assert sizes[f16] >= 0.8 * (sizes[f16] + sizes[f32]), sizes   # the weights are float16 (tables/consts may not)


def test_cli_writes_all_graphs(tmp_path):
    g, cfg, tensors, _ = model("bert_s0_h384")
    convert.write_model_dir(tmp_path / "model", cfg, tensors)
    assert E.main([str(tmp_path / "model"), str(tmp_path / "onnx"), "--groups", "prompt_adapter,decoder_step"]) == 0
    man = json.loads((tmp_path / "onnx" / "onnx_manifest.json").read_text())
    assert set(man["graphs"]) == {"prompt_adapter", "decoder_step"} and man["opset"] == E.OPSET
    step = onnx.load(str(tmp_path / "onnx" / "decoder_step.onnx"))
    assert [i.name for i in step.graph.input][:4] == ["tokens", "position", "image_hw", "past_key_bias"]
    # An fp16 export into the same folder writes its own manifest and leaves the fp32 one alone.
    assert E.main([str(tmp_path / "model"), str(tmp_path / "onnx"), "--groups", "prompt_adapter", "--fp16"]) == 0
    man16 = json.loads((tmp_path / "onnx" / "onnx_manifest.fp16.json").read_text())
    assert man16["precision"] == "fp16" and set(man16["graphs"]) == {"prompt_adapter"}
    assert json.loads((tmp_path / "onnx" / "onnx_manifest.json").read_text()) == man
    with pytest.raises(SystemExit):
        E.main([str(tmp_path / "model"), str(tmp_path / "x"), "--groups", "nope"])


# ---- proposal head (optional group; the golden configs have none: a demo-sized random head) ----------------------
def test_proposal_head_graph(tmp_path):
    from pixelllm_ref import proposal_head as ph

    cfg = json.loads((Path(__file__).resolve().parents[2] / "configs" / "demo.json").read_text())
    torch.manual_seed(0)
    head = ph.ProposalHead(cfg).eval()
    with torch.no_grad():   # a head that is not at its init (biases 0 / constant)
        for p in head.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    mods = {"proposal_head": head}
    assert "proposal_head" in E.model_groups(cfg) and "proposal_head" not in E.model_groups(model("bert_s0_h384")[1])
    path = tmp_path / "proposal_head.onnx"
    assert E.export_group("proposal_head", cfg, mods, path) == ["heatmap", "box_regs"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for n in (1, 3):   # dynamic batch (traced with 2)
        feats = E.example_inputs("proposal_head", cfg, n=n, seed=n)["features"]
        hm, reg = sess.run(None, {"features": feats.numpy()})
        with torch.no_grad():
            want = head(feats)
        close(hm, want["heatmap"], what="heatmap")
        close(reg, want["box_regs"], what="box_regs")
        assert (reg >= 0).all()
    m16 = E.convert_float16(onnx.load(str(path)))
    onnx.save(m16, str(tmp_path / "proposal_head.fp16.onnx"))
    s16 = ort.InferenceSession(str(tmp_path / "proposal_head.fp16.onnx"), so, providers=["CPUExecutionProvider"])
    hm16, reg16 = s16.run(None, {"features": feats.numpy()})
    close(hm16, want["heatmap"], TOL16, "fp16 heatmap")
    close(reg16, want["box_regs"], TOL16, "fp16 box_regs")
    with pytest.raises(ValueError, match="proposal_head"):
        E.export_all(*model("bert_s0_h384")[1:3], tmp_path / "x", groups=["proposal_head"])
