"""Reader for official Flax checkpoints (`flax.serialization.to_bytes` / `msgpack_serialize` output).

No flax/jax import: this follows the wire format of flax/serialization.py (flax 0.12.8) with plain `msgpack`:
- the payload is a msgpack map (the state dict of the saved object; nested dicts, string keys);
- numpy arrays are msgpack ExtType code 1 whose data is msgpack((shape, dtype_name, C-order bytes))
  (`_ndarray_to_bytes`); numpy scalars are ExtType code 3 with the same payload; Python complex is code 2;
- arrays larger than `MAX_CHUNK_SIZE` (2**30 bytes) are stored as a map
  {"__msgpack_chunked_array__": True, "shape": {"0": d0, ...}, "chunks": {"0": flat0, "1": flat1, ...}}
  (`_chunk` / `_unchunk`); the chunks are 1-D and are concatenated then reshaped.

`read_flax_checkpoint(src)` returns the *parameter* tree flattened to {"a/b/c": ndarray} (the Flax paths used by
`convert.convert`). A checkpoint that is a scenic train state (keys such as "params", "optimizer", "opt_state",
"global_step", ...) or a variables dict {"params": {...}} is reduced to its parameter subtree; anything where
that choice is ambiguous is refused with `FlaxCheckpointError`.
"""
from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np

_EXT_NDARRAY = 1
_EXT_COMPLEX = 2
_EXT_NPSCALAR = 3
_CHUNKED = "__msgpack_chunked_array__"

# Fields of scenic's TrainState (scenic/train_lib/train_utils.py) and of flax's optimizer / training states that
# may sit beside the parameters at the top of a checkpoint. Only "params" (or legacy "optimizer"/"target") hold
# the model parameters.
_TRAIN_STATE_KEYS = {"params", "optimizer", "opt_state", "global_step", "step", "model_state", "batch_stats",
                     "rng", "metadata", "tx", "apply_fn"}


class FlaxCheckpointError(ValueError):
    pass


def _decode_ndarray(data: bytes) -> np.ndarray:
    try:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt payload
        raise FlaxCheckpointError(f"corrupt array payload in Flax checkpoint: {e}") from e
    if isinstance(dtype_name, bytes):
        dtype_name = dtype_name.decode("ascii", errors="replace")
    if not isinstance(shape, (list, tuple)) or not isinstance(buffer, bytes):
        raise FlaxCheckpointError("corrupt array payload in Flax checkpoint: expected (shape, dtype, bytes)")
    shape = tuple(int(s) for s in shape)
    if dtype_name == "bfloat16":
        raw = np.frombuffer(buffer, dtype="<u2")
        arr = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        try:
            dtype = np.dtype(dtype_name)
        except TypeError as e:
            raise FlaxCheckpointError(f"unsupported array dtype {dtype_name!r} in Flax checkpoint") from e
        if dtype.hasobject:
            raise FlaxCheckpointError(f"object dtype {dtype_name!r} in Flax checkpoint")
        arr = np.frombuffer(buffer, dtype=dtype)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise FlaxCheckpointError(f"array payload holds {arr.size} elements, shape {shape} needs "
                                  f"{int(np.prod(shape, dtype=np.int64))} (truncated or corrupt checkpoint)")
    return arr.reshape(shape)


def _ext_hook(code: int, data: bytes):
    if code == _EXT_NDARRAY:
        return _decode_ndarray(data)
    if code == _EXT_NPSCALAR:
        return _decode_ndarray(data)[()]
    if code == _EXT_COMPLEX:
        re, im = msgpack.unpackb(data)
        return complex(re, im)
    raise FlaxCheckpointError(f"unknown msgpack extension type {code} in Flax checkpoint")


def _indexed(d, what: str) -> list:
    if not isinstance(d, dict) or any(str(i) not in d for i in range(len(d))):
        raise FlaxCheckpointError(f"chunked array: malformed {what!r} (expected {{'0': ..., '1': ...}})")
    return [d[str(i)] for i in range(len(d))]


def _unchunk_tree(node):
    if isinstance(node, dict):
        if _CHUNKED in node:
            shape = tuple(int(s) for s in _indexed(node.get("shape"), "shape"))
            chunks = _indexed(node.get("chunks"), "chunks")
            if not chunks or not all(isinstance(c, np.ndarray) for c in chunks):
                raise FlaxCheckpointError("chunked array: chunks must be arrays")
            flat = np.concatenate([c.reshape(-1) for c in chunks])
            if flat.size != int(np.prod(shape, dtype=np.int64)):
                raise FlaxCheckpointError(f"chunked array: {flat.size} elements do not fill shape {shape}")
            return flat.reshape(shape)
        return {k: _unchunk_tree(v) for k, v in node.items()}
    return node


def restore_tree(data: bytes):
    """msgpack bytes -> nested dict with numpy leaves (equivalent of `flax.serialization.msgpack_restore`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FlaxCheckpointError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise FlaxCheckpointError("empty Flax checkpoint")
    try:
        tree = msgpack.unpackb(bytes(data), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except FlaxCheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises several types for truncated/garbage input
        raise FlaxCheckpointError(f"not a valid Flax msgpack checkpoint (truncated or corrupt): "
                                  f"{type(e).__name__}: {e}") from e
    if not isinstance(tree, dict):
        raise FlaxCheckpointError(f"Flax checkpoint top level is {type(tree).__name__}, expected a map")
    return _unchunk_tree(tree)


def _nonempty(x) -> bool:
    return x is not None and not (isinstance(x, dict) and len(x) == 0)


def select_params(tree: dict) -> dict:
    """Pick the parameter subtree of a checkpoint tree; refuse ambiguous layouts."""
    keys = set(tree)
    wrapper = keys & _TRAIN_STATE_KEYS
    if not wrapper:
        return tree  # bare parameter tree: {"git_backbone": ..., "sam_backbone": ...}
    if keys - _TRAIN_STATE_KEYS:
        raise FlaxCheckpointError(f"ambiguous Flax checkpoint: train-state keys {sorted(wrapper)} mixed with "
                                  f"other top-level keys {sorted(keys - _TRAIN_STATE_KEYS)[:5]}")
    params = tree.get("params")
    opt = tree.get("optimizer")
    legacy = opt.get("target") if isinstance(opt, dict) else None
    if _nonempty(params) and _nonempty(legacy):
        raise FlaxCheckpointError("ambiguous Flax checkpoint: both 'params' and 'optimizer/target' hold parameters")
    chosen = params if _nonempty(params) else legacy
    if not _nonempty(chosen):
        raise FlaxCheckpointError(f"Flax checkpoint has train-state keys {sorted(keys)} but no parameters under "
                                  "'params' or 'optimizer/target'")
    if not isinstance(chosen, dict):
        raise FlaxCheckpointError(f"checkpoint parameters are a {type(chosen).__name__}, expected a map")
    # Flax variables dict {"params": {...}} stored as the params field: unwrap once, but only if it is the sole key.
    if set(chosen) == {"params"} and isinstance(chosen["params"], dict):
        chosen = chosen["params"]
    elif "params" in chosen:
        raise FlaxCheckpointError(f"ambiguous Flax checkpoint: parameter tree has 'params' beside "
                                  f"{sorted(set(chosen) - {'params'})[:5]}")
    return chosen


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> {"a/b/c": array}. Every leaf must be an array; empty sub-dicts are dropped."""
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if not isinstance(k, str) or "/" in k or not k:
            raise FlaxCheckpointError(f"bad parameter name {k!r} under {prefix or '<root>'!r}")
        path = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, path))
        elif isinstance(v, np.ndarray):
            out[path] = v
        else:
            raise FlaxCheckpointError(f"parameter {path!r} is a {type(v).__name__}, expected an array")
    return out


def read_flax_checkpoint(src: bytes | str | Path) -> dict[str, np.ndarray]:
    """Flax msgpack checkpoint (bytes or file path) -> flat {"a/b/c": ndarray} of its parameters."""
    if isinstance(src, (str, Path)):
        data = Path(src).read_bytes()
    else:
        data = src
    flat = flatten(select_params(restore_tree(data)))
    if not flat:
        raise FlaxCheckpointError("Flax checkpoint holds no parameter arrays")
    return flat
