"""The network's inference program, traced once per (model, stack shape) and reused by later processes.

The persistent compilation cache (compilation_cache.py) saves compiling, but every process still traces
the Flax model in Python to find the program to look up, and checks the parameters against a second,
abstract trace: on a CPU that is seconds of a repeated prediction. Here the traced program is serialised
with `jax.export` next to the compilation cache (`<cache>/traced/`) and a later process deserialises it
instead of tracing. The key covers everything the program depends on: the model config, the parameter
shapes, the stack's shape, the source of the `dualfocus_jax` package and the JAX version, so an edited
model or another JAX never reuses a stale program. Without a compilation cache folder nothing is stored
and the network is traced as usual.

The predictor (`load_network`, `CheckpointNetwork.probabilities`) stores the checkpoint's parameters there
too, as a flat `.npz` of float32 arrays plus the model config (`<cache>/traced/params-<key>.npz`, keyed by
the bytes of the checkpoint folder, the package source and the JAX version): a repeated prediction reads
them instead of restoring the orbax checkpoint, so it imports neither orbax nor Flax. An entry is written
only once the parameters have run through a program traced or stored for them (their shapes fit the
config); a damaged or unreadable entry is ignored, and the checkpoint loaded and stored again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from dualfocus_jax.inference.checkpoint_io import DEFAULT_CHECKPOINT, checkpoint_digest, load_exported_checkpoint
from dualfocus_jax.slice_prior import projects_after_weights

if TYPE_CHECKING:
    from dualfocus_jax.model import DualFocusConfig

TRACED_DIR = "traced"
_CONFIG_ENTRY = "__model_config__"  # the config's JSON text in a parameter entry; the other names are paths
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_in_process: dict[str, object] = {}
_source_digest: str | None = None


class NetworkMismatchError(ValueError):
    """The parameters do not have the shapes the model config implies; `mismatch` lists the differences."""

    def __init__(self, config: DualFocusConfig, mismatch: str):
        super().__init__(f"the parameters do not belong to the model the config describes "
                         f"({config.size}/{config.variant}): {mismatch}")
        self.config = config
        self.mismatch = mismatch


@dataclasses.dataclass
class CheckpointNetwork:
    """An exported checkpoint ready to predict: its parameters ({'params': ...} of NumPy float32) and its
    model config, as the canonical JSON text the program keys hash (`config_text`) and, once built, as a
    `DualFocusConfig` (`config`: None while nothing needed it, i.e. when the parameters came from the store).

    folder: the checkpoint folder; stored_key: the key of its parameter entry (None without a store);
    from_store: whether the parameters were read from that entry rather than from the checkpoint.
    """

    folder: str
    params: dict
    config_text: str
    config: DualFocusConfig | None = None
    stored_key: str | None = None
    from_store: bool = False

    @property
    def label(self) -> str:
        """"size/variant", e.g. "small/dualfocus"."""
        fields = json.loads(self.config_text)
        return f"{fields['size']}/{fields['variant']}"

    @property
    def slice_prior(self) -> str:
        """The model's `DualFocusConfig.slice_prior` ("none" for checkpoints exported before the field)."""
        return json.loads(self.config_text).get("slice_prior", "none")

    @property
    def project_unimodal_at_inference(self) -> bool:
        """The model's `DualFocusConfig.project_unimodal_at_inference` (True, its default, if absent)."""
        return bool(json.loads(self.config_text).get("project_unimodal_at_inference", True))

    @property
    def expectation(self) -> str:
        """The model's `DualFocusConfig.expectation` ("focus" for checkpoints exported before the field)."""
        return json.loads(self.config_text).get("expectation", "focus")

    def model_config(self) -> DualFocusConfig:
        """The DualFocusConfig (built from `config_text` on first use; imports the model, i.e. Flax)."""
        if self.config is None:
            from dualfocus_jax.model import DualFocusConfig  # only to trace: a stored program needs no Flax

            self.config = DualFocusConfig.from_config_dict(json.loads(self.config_text))
        return self.config

    def probabilities(self, images_SHWC: jax.Array):
        """`network_probabilities` for these parameters. Parameters from a store entry whose shapes do not fit
        the config (an entry that should not exist) are loaded again from the checkpoint before giving up."""
        try:
            result = _probabilities(self.params, self.config_text, images_SHWC, self.model_config)
        except NetworkMismatchError:
            if not self.from_store:
                raise
            reloaded = load_network(self.folder, use_store=False)
            self.params, self.config_text, self.config, self.from_store = (
                reloaded.params, reloaded.config_text, reloaded.config, False)
            result = _probabilities(self.params, self.config_text, images_SHWC, self.model_config)
        if not self.from_store and self.stored_key is not None:
            _store_params(self.stored_key, self.params, self.config_text)
            self.from_store = True  # written once
        return result


def load_network(folder: str | None = None, *, use_store: bool = True) -> CheckpointNetwork:
    """The exported checkpoint in `folder` (None: the shipped model) as a `CheckpointNetwork`: from the
    parameter store when this process has one and it holds the checkpoint, else by `load_exported_checkpoint`
    (its CheckpointErrors pass through; the shape check is left to the tracing, as the predictor does)."""
    folder = os.path.abspath(folder or DEFAULT_CHECKPOINT)
    store = traced_program_dir()
    key = None
    if store is not None:
        try:
            key = _params_key(folder)
        except OSError:  # not a readable checkpoint folder: load_exported_checkpoint says what is wrong
            key = None
    if key is not None and use_store:
        stored = _load_params(os.path.join(store, f"params-{key}.npz"))
        if stored is not None:
            params, config_text = stored
            return CheckpointNetwork(folder, params, config_text, None, key, from_store=True)
    params, config = load_exported_checkpoint(folder, check_shapes=False)
    return CheckpointNetwork(folder, params, _config_text(config), config, key)


def network_probabilities(params, config: DualFocusConfig, images_SHWC: jax.Array):
    """(p (S, H, W) over the slices in the given order, all-in-focus (H, W, 3)) for a near-to-far stack."""
    return _probabilities(params, _config_text(config), images_SHWC, lambda: config)


def traced_program_dir() -> str | None:
    """`<compilation cache>/traced`, or None while this process has no compilation cache folder."""
    cache = jax.config.jax_compilation_cache_dir
    return os.path.join(cache, TRACED_DIR) if cache else None


def _probabilities(params, config_text: str, images_SHWC, get_config):
    key = _program_key(params, config_text, images_SHWC)
    program = _in_process.get(key)
    if program is None:
        program = _load_or_trace(key, params, get_config, images_SHWC)
        _in_process[key] = program
    return program(params, images_SHWC)


def _config_text(config: DualFocusConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def _forward(params, config: DualFocusConfig, images_SHWC):
    from dualfocus_jax.model import DualFocusNet  # only while tracing: a stored program runs without Flax

    s = images_SHWC.shape[0]
    # Slice indices as focus values: the network only sorts by them (the given order is near to far, the
    # order it was trained on) and the expectation is redone outside in the working units.
    order = jnp.arange(s, dtype=jnp.float32)[None]
    # So are the slice weights, which need the focus values (focus_units.with_slice_prior), and with them the
    # unimodal projection, which follows the weights (dualfocus.py).
    projects = config.project_unimodal_at_inference
    config = dataclasses.replace(config, slice_prior="none", project_unimodal_at_inference=(
        projects and not projects_after_weights(config.slice_prior, projects)))
    outputs = DualFocusNet(config).apply(params, images_SHWC[None], order, train=False)
    return outputs.prob[0], outputs.all_in_focus[0]


def _params_mismatch(params, config: DualFocusConfig) -> str:
    from dualfocus_jax.model import params_mismatch  # traces the model: Flax is imported for tracing anyway

    return params_mismatch(params, config)


def _load_or_trace(key: str, params, get_config, images_SHWC):
    folder = traced_program_dir()
    path = os.path.join(folder, f"{key}.jaxexport") if folder else None
    if path and os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                return jax.jit(export.deserialize(bytearray(handle.read())).call)
        except Exception:  # a damaged or foreign file: trace again and overwrite it below
            pass
    config = get_config()
    # Only a freshly traced program needs the check: a stored one was traced from parameters of these shapes.
    mismatch = _params_mismatch(params, config)
    if mismatch:
        raise NetworkMismatchError(config, mismatch)
    traced = jax.jit(lambda p, x: _forward(p, config, x))
    if path is None:
        return traced
    exported = export.export(traced)(*jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype),
                                                   (params, images_SHWC)))
    _write_atomically(path, exported.serialize())
    return jax.jit(exported.call)  # the same program the next process will load, so it hits the same cache


def _program_key(params, config_text: str, images_SHWC) -> str:
    leaves = [(jax.tree_util.keystr(path), tuple(np.shape(leaf)), str(leaf.dtype))
              for path, leaf in jax.tree_util.tree_leaves_with_path(params)]
    described = {"config": config_text, "params": leaves, "input": [list(images_SHWC.shape),
                                                                    str(images_SHWC.dtype)],
                 "jax": jax.__version__, "backend": jax.default_backend(), "source": _package_source_digest()}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _params_key(folder: str) -> str:
    described = {"checkpoint": checkpoint_digest(folder), "jax": jax.__version__, "numpy": np.__version__,
                 "source": _package_source_digest()}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def _store_params(key: str, params, config_text: str) -> None:
    """Writes (or replaces: a damaged or unfitting one) the parameter entry `params-<key>.npz`, atomically;
    nothing when there is no store, or when a parameter's path cannot be written as a name."""
    folder = traced_program_dir()
    if folder is None:
        return
    path = os.path.join(folder, f"params-{key}.npz")
    arrays = {}
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(params):
        names = [getattr(entry, "key", None) for entry in leaf_path]
        if not all(isinstance(name, str) and name and "/" not in name for name in names):
            return  # not a tree of dicts with plain string keys: keep loading it from the checkpoint
        arrays["/".join(names)] = np.asarray(leaf, np.float32)
    arrays[_CONFIG_ENTRY] = np.array(config_text)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _write_atomically(path, buffer.getvalue())


def _load_params(path: str):
    """(params as nested dicts of float32 arrays, config text) from a parameter entry, or None when it is
    missing, damaged (the zip checksums are verified on reading) or not an entry."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as entry:
            config_text = str(entry[_CONFIG_ENTRY][()])
            params: dict = {}
            for name in entry.files:
                if name == _CONFIG_ENTRY:
                    continue
                array = entry[name]
                if array.dtype != np.float32:
                    return None
                *parents, leaf = name.split("/")
                node = params
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[leaf] = array
        json.loads(config_text)
    except Exception:  # a damaged or foreign file (zipfile, numpy, json, key errors): load the checkpoint
        return None
    return (params, config_text) if params else None


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
