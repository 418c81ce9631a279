"""Writes tests/data/flax_ckpt_small.msgpack with real flax.serialization.to_bytes (flax 0.12.8, run in a scratch venv:
`python3 -m venv /tmp/flaxvenv && /tmp/flaxvenv/bin/pip install --index-url file:///opt/pypi/simple flax==0.12.8`;
`/tmp/flaxvenv/bin/python tests/data/make_flax_ckpt_small.py ../../../shared/golden/golden_bert_s0_h384.npz tests/data/flax_ckpt_small.msgpack`).
Content: point_predictor, prompt_encoder and prompt_adapter (without transformer and hypernetwork MLPs) of the golden
bert params, wrapped in a scenic-like train state; the largest array goes through flax's chunked path."""
import sys
import numpy as np
import flax
from flax import serialization

golden, out = sys.argv[1], sys.argv[2]
z = np.load(golden)
keep = lambda p: p.startswith(("point_predictor/", "prompt_encoder/")) or (
    p.startswith("prompt_adapter/") and "output_hypernetworks_mlps" not in p and "/transformer/" not in p)
tree = {}
for k in z.files:
    if not k.startswith("param/"):
        continue
    p = k[len("param/"):]
    if not keep(p):
        continue
    node = tree
    *parents, leaf = p.split("/")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = np.asarray(z[k])
# A scenic-like train state around the params (optax: optimizer field empty).
state = {"global_step": 7, "optimizer": {}, "opt_state": None, "params": tree, "model_state": {}, "rng": None,
         "metadata": {"chrono": 1}}
# Force one array through the chunked path: flax chunks arrays above MAX_CHUNK_SIZE bytes (2**30 by default).
sizes = sorted({v.nbytes for v in __import__("jax").tree_util.tree_leaves(tree)})
serialization.MAX_CHUNK_SIZE = sizes[-2]  # only the largest array(s) exceed it -> chunked into 2+ chunks
data = serialization.to_bytes(state)
open(out, "wb").write(data)
# check with flax itself
back = serialization.msgpack_restore(data)
print("flax", flax.__version__, "bytes", len(data), "arrays", sum(1 for _ in __import__("jax").tree_util.tree_leaves(tree)))
