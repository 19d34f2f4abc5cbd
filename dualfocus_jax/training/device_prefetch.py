"""Training batches sent to the devices ahead of the update that uses them, as uint8 where they are images.

`DevicePrefetcher` wraps the input iterator: it keeps `depth` global batches on the devices, the one in use
and `depth` − 1 already sent ahead (JAX copies asynchronously, so batch n + 1 travels while update n runs),
and answers `get_state`/`set_state` for the batches it has *handed out*, not the ones it holds, so a
checkpoint resumes with the first batch no update has used. `quantised_stack` is the host half of the uint8
transfer (4× fewer bytes than float32), `stack_as_float` the device half, inside the jitted step.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.training.mesh import global_batch_array

STACK_DTYPES = ("float32", "uint8")


def transfer_dtype(setting: str, platform: str | None = None) -> str:
    """The dtype stacks travel in for `input.stack_dtype` (float32 | uint8 | auto). "auto" is uint8 on an
    accelerator, where the host-to-device copy is a bus transfer worth shrinking, and float32 on a CPU, where it
    is a memory copy and the quantisation would only change the training data."""
    if setting == "auto":
        return "float32" if (platform or jax.default_backend()) == "cpu" else "uint8"
    if setting not in STACK_DTYPES:
        raise ValueError(f"input.stack_dtype must be one of {STACK_DTYPES} or 'auto', got {setting!r}.")
    return setting


def quantised_stack(example: dict) -> dict:
    """`example` with its stack in [0, 1] as uint8 (rounded to the nearest of 256 levels, as a photo holds it)."""
    stack = np.asarray(example["stack"], np.float32)
    return {**example, "stack": np.round(np.clip(stack, 0.0, 1.0) * 255.0).astype(np.uint8)}


def stack_as_float(stack):
    """A batch's stack as float32 in [0, 1], whichever of STACK_DTYPES it was sent as."""
    if stack.dtype == jnp.uint8:
        return stack.astype(jnp.float32) * (1.0 / 255.0)
    return stack.astype(jnp.float32)


class DevicePrefetcher:
    """Iterates global batches (dicts of jax Arrays sharded over `mesh`) from a checkpointable iterator of local
    NumPy batches; `depth` batches on the devices at once (2 = double-buffered, 1 = none sent ahead)."""

    def __init__(self, iterator, mesh, depth: int = 2):
        if depth < 1:
            raise ValueError(f"input.device_prefetch must be ≥ 1 batch on the devices, got {depth}.")
        self._iterator, self._mesh, self._depth = iterator, mesh, int(depth)
        self._ahead: collections.deque = collections.deque()
        self._handed_out_state = iterator.get_state()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while len(self._ahead) < self._depth:
            local = next(self._iterator)
            # The iterator's position right after this batch: what a checkpoint saved after its update holds.
            self._ahead.append((global_batch_array(local, self._mesh), self._iterator.get_state()))
        batch, self._handed_out_state = self._ahead.popleft()
        return batch

    def get_state(self):
        """The input position after the last batch handed out (batches held ahead are read again on resume)."""
        return self._handed_out_state

    def set_state(self, state) -> None:
        self._ahead.clear()
        self._iterator.set_state(state)
        self._handed_out_state = self._iterator.get_state()
