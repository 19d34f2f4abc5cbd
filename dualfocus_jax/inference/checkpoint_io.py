"""Exported model checkpoints: the parameters of one `DualFocusNet` plus the config that built it.

Layout of an exported checkpoint folder (what each folder of `dualfocus_jax/pretrained/` holds):

    model_config.json   every field of the `DualFocusConfig` (`DualFocusConfig.to_dict()`), plus provenance
    params/             an orbax `StandardCheckpointer` tree of {'params': ...} (float32 NumPy arrays)

Unlike a training workdir (optimizer state, data-iterator position, several steps), this holds only what
prediction needs, so it stays a few MB and can be committed. Loading checks the parameter shapes against
the config before anything runs, so a checkpoint of another model or a damaged folder fails with a clear
message instead of a shape error deep inside Flax.

Orbax and the model (Flax) are imported by the functions that need them, not with this module: a repeated
prediction reads the parameters from the traced-program store (traced_network.py) and needs neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING

import jax
import numpy as np

if TYPE_CHECKING:
    from dualfocus_jax.model import DualFocusConfig

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
# The model shipped with the package: the `small` network trained on the focal-stack engine and the embedded
# synthetic_focal scenes (configs/engine_small.py, stages 1 to 5 and 13 to 15), its finest costs upsampled guided by
# colour (model/guided_upsampling.py), its slices weighted by their cells in inverse focus distance
# (slice_prior.with_blur_cell_prior); its evaluation.md says how it compares.
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained",
                                  "small_engine_stage15")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used; the message names the problem and the fix."""


def save_exported_checkpoint(folder: str, params: dict, config: DualFocusConfig, *,
                             provenance: dict | None = None) -> str:
    """Writes {'params': ...} (float32) and the model config into `folder` (created; an existing export there
    is replaced).

    Returns the folder. `provenance` (JSON-serialisable, e.g. the training config and step) is stored in
    model_config.json under "provenance" for people; loading ignores it.
    """
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    _check_params_match(params, config, folder)
    import orbax.checkpoint as ocp  # here, not at the top: predictions from the traced-program store need no orbax

    host = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(folder, PARAMS_DIR), host, force=True)  # re-export replaces old params
    checkpointer.wait_until_finished()  # the save is asynchronous; the folder must be complete on return
    with open(os.path.join(folder, CONFIG_FILE), "w", encoding="utf-8") as handle:
        json.dump({"model_config": config.to_dict(), "provenance": provenance or {}}, handle, indent=2, default=str)
    return folder


def load_exported_checkpoint(folder: str | None = None, *, check_shapes: bool = True) -> tuple[dict, DualFocusConfig]:
    """({'params': ...} as NumPy float32, DualFocusConfig) from an exported checkpoint folder.

    `folder` None = the shipped model (`DEFAULT_CHECKPOINT`). Raises CheckpointError when the folder is
    missing, is not an exported checkpoint, its config is unreadable, its parameters are unreadable or do
    not have the shapes the config implies (a checkpoint of another model). `check_shapes` False leaves that
    last check to the caller (the predictor's traced_network.py does it only when it traces the model anyway).
    """
    folder = os.path.abspath(folder or DEFAULT_CHECKPOINT)
    config = read_checkpoint_config(folder)
    params_dir = os.path.join(folder, PARAMS_DIR)
    if not os.path.isdir(params_dir):
        raise CheckpointError(f"checkpoint {folder!r} has {CONFIG_FILE} but no {PARAMS_DIR}/ folder of parameters; "
                              "re-export it with experiments/evaluate_pretrained.py (save_exported_checkpoint).")
    try:
        restored = restore_on_first_device(params_dir)
    except Exception as error:  # orbax raises many types (ValueError, FileNotFoundError, msgpack, tensorstore)
        raise CheckpointError(f"cannot read the parameters in {params_dir!r} ({type(error).__name__}: "
                              f"{str(error)[:200]}); the checkpoint is damaged or not an orbax parameter tree. "
                              "Re-export it, or pass another --checkpoint.") from None
    params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), restored)
    if check_shapes:
        _check_params_match(params, config, folder)
    return params, config


def restore_on_first_device(path: str):
    """The orbax `StandardCheckpointer` tree at `path`, every array restored whole onto this process's first
    device, whatever mesh or number of processes wrote it (the saved shardings may name devices that do not
    exist here). Orbax's and tensorstore's errors pass through; the callers word them."""
    import orbax.checkpoint as ocp  # as in save_exported_checkpoint: only a restore needs orbax

    checkpointer = ocp.StandardCheckpointer()
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with quiet_orbax():  # in a training workdir it warns that the manager-level metadata is not in the item folder
        metadata = checkpointer.metadata(path).item_metadata
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=local), metadata)
    return checkpointer.restore(path, target)


@contextlib.contextmanager
def quiet_orbax():
    """Orbax logs through absl's logger; hide its warnings for the duration of a harmless call."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_checkpoint_config(folder: str) -> DualFocusConfig:
    """The DualFocusConfig stored in `folder`/model_config.json (CheckpointError if missing or invalid)."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint folder not found: {folder!r}. Pass the folder of an exported "
                              f"checkpoint (holding {CONFIG_FILE} and {PARAMS_DIR}/), or leave --checkpoint out "
                              "for the shipped model.")
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        hint = (" It looks like a training workdir: export it with `python -m experiments.evaluate_pretrained "
                f"--workdir {folder} --out {os.path.join(folder, 'export')} --export_only` and pass --checkpoint "
                f"{os.path.join(folder, 'export')}." if os.path.isdir(os.path.join(folder, "checkpoints")) else "")
        raise CheckpointError(f"{folder!r} is not an exported DualFocus checkpoint: no {CONFIG_FILE}.{hint}")
    from dualfocus_jax.model import DualFocusConfig  # imports Flax: only where a config is built (module docstring)

    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        return DualFocusConfig.from_config_dict(stored["model_config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path!r} is not a valid model config ({type(error).__name__}: {str(error)[:200]}); "
                              "the checkpoint is damaged. Re-export it.") from None


def checkpoint_digest(folder: str) -> str:
    """A hash of the bytes of `folder`'s model_config.json and of every file under params/ (with their paths):
    what the parameters and the config read from the folder depend on. OSError when a file cannot be read."""
    digest = hashlib.sha256()
    with open(os.path.join(folder, CONFIG_FILE), "rb") as handle:
        digest.update(handle.read())
    params_dir = os.path.join(folder, PARAMS_DIR)
    for root, dirs, names in os.walk(params_dir):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            digest.update(b"\0" + os.path.relpath(path, params_dir).encode() + b"\0")
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def _check_params_match(params, config: DualFocusConfig, folder: str) -> None:
    """CheckpointError listing the first differences when `params` do not fit `DualFocusNet(config)`."""
    from dualfocus_jax.model import params_mismatch  # traces the model, so Flax is needed anyway

    mismatch = params_mismatch(params, config)
    if mismatch:
        raise mismatch_error(folder, config, mismatch)


def mismatch_error(folder: str, config: DualFocusConfig, mismatch: str) -> CheckpointError:
    """The error for parameters of `folder` that do not fit the model its config describes."""
    return CheckpointError(
        f"the parameters in {folder!r} do not belong to the model its config describes "
        f"({config.size}/{config.variant}): {mismatch}. The checkpoint comes from another model "
        "(size or variant) or its model_config.json was edited; use the matching config or another checkpoint.")
