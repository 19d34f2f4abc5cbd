"""The network's inference program, traced once per (model, stack shape) and reused by later processes.

The persistent compilation cache (compilation_cache.py) saves compiling, but every process still traces
the Flax model in Python to find the program to look up, and checks the parameters against a second,
abstract trace: on a CPU that is seconds of a repeated prediction. Here the traced program is serialised
with `jax.export` next to the compilation cache (`<cache>/traced/`) and a later process deserialises it
instead of tracing. The key covers everything the program depends on: the model config, the parameter
shapes, the stack's shape, the source of the `dualfocus_jax` package and the JAX version, so an edited
model or another JAX never reuses a stale program. Without a compilation cache folder nothing is stored
and the network is traced as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from dualfocus_jax.model import DualFocusConfig, DualFocusNet, params_mismatch

TRACED_DIR = "traced"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_in_process: dict[str, object] = {}
_source_digest: str | None = None


class NetworkMismatchError(ValueError):
    """The parameters do not have the shapes the model config implies; `mismatch` lists the differences."""

    def __init__(self, config: DualFocusConfig, mismatch: str):
        super().__init__(f"the parameters do not belong to the model the config describes "
                         f"({config.size}/{config.variant}): {mismatch}")
        self.mismatch = mismatch


def network_probabilities(params, config: DualFocusConfig, images_SHWC: jax.Array):
    """(p (S, H, W) over the slices in the given order, all-in-focus (H, W, 3)) for a near-to-far stack."""
    key = _program_key(params, config, images_SHWC)
    program = _in_process.get(key)
    if program is None:
        program = _load_or_trace(key, params, config, images_SHWC)
        _in_process[key] = program
    return program(params, images_SHWC)


def traced_program_dir() -> str | None:
    """`<compilation cache>/traced`, or None while this process has no compilation cache folder."""
    cache = jax.config.jax_compilation_cache_dir
    return os.path.join(cache, TRACED_DIR) if cache else None


def _forward(params, config: DualFocusConfig, images_SHWC):
    s = images_SHWC.shape[0]
    # Slice indices as focus values: the network only sorts by them (the given order is near to far, the
    # order it was trained on) and the expectation is redone outside in the working units.
    order = jnp.arange(s, dtype=jnp.float32)[None]
    outputs = DualFocusNet(config).apply(params, images_SHWC[None], order, train=False)
    return outputs.prob[0], outputs.all_in_focus[0]


def _load_or_trace(key: str, params, config: DualFocusConfig, images_SHWC):
    folder = traced_program_dir()
    path = os.path.join(folder, f"{key}.jaxexport") if folder else None
    if path and os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                return jax.jit(export.deserialize(bytearray(handle.read())).call)
        except Exception:  # a damaged or foreign file: trace again and overwrite it below
            pass
    # Only a freshly traced program needs the check: a stored one was traced from parameters of these shapes.
    mismatch = params_mismatch(params, config)
    if mismatch:
        raise NetworkMismatchError(config, mismatch)
    traced = jax.jit(lambda p, x: _forward(p, config, x))
    if path is None:
        return traced
    exported = export.export(traced)(*jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype),
                                                   (params, images_SHWC)))
    _write_atomically(path, exported.serialize())
    return jax.jit(exported.call)  # the same program the next process will load, so it hits the same cache


def _program_key(params, config: DualFocusConfig, images_SHWC) -> str:
    leaves = [(jax.tree_util.keystr(path), tuple(np.shape(leaf)), str(leaf.dtype))
              for path, leaf in jax.tree_util.tree_leaves_with_path(params)]
    described = {"config": config.to_dict(), "params": leaves, "input": [list(images_SHWC.shape),
                                                                         str(images_SHWC.dtype)],
                 "jax": jax.__version__, "backend": jax.default_backend(), "source": _package_source_digest()}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _package_source_digest() -> str:
    """A hash of every .py file of the installed package (once per process)."""
    global _source_digest
    if _source_digest is None:
        digest = hashlib.sha256()
        for root, dirs, names in os.walk(_PACKAGE_ROOT):
            dirs.sort()
            for name in sorted(n for n in names if n.endswith(".py")):
                with open(os.path.join(root, name), "rb") as handle:
                    digest.update(name.encode() + b"\0" + handle.read())
        _source_digest = digest.hexdigest()
    return _source_digest


def _write_atomically(path: str, data: bytes) -> None:
    """A cache entry appears whole or not at all; a folder that cannot be written only skips the store."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temporary)
