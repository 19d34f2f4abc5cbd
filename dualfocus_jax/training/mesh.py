"""The device mesh of data-parallel training and the placement of host data on it.

One mesh axis, "data", over every device of every process: the batch is split along it and the training
state is replicated. The same code runs on one CPU, 4 fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`), 8 GPUs or several hosts after
`jax.distributed.initialize()`: jit with `NamedSharding` lets XLA insert the gradient all-reduce.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_parallel_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all devices of all processes, in jax.devices() order)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the "data" axis, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (training state, scalar metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch splits evenly over the devices and processes."""
    devices = mesh.devices.size
    if global_batch % devices:
        raise ValueError(f"input.batch_size={global_batch} must be a multiple of the {devices} devices of the mesh "
                         f"(e.g. {devices * max(1, global_batch // devices)}).")
    if global_batch % jax.process_count():
        raise ValueError(f"input.batch_size={global_batch} must be a multiple of the {jax.process_count()} processes.")


def global_batch_array(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's local batch (numpy, leading axis = local batch) into global jax Arrays
    sharded over "data"; the global batch is the concatenation of the local batches in process order."""
    sharding = batch_sharding(mesh)
    return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for key, value in local_batch.items()}


def replicated_on_mesh(tree, mesh: Mesh):
    """Copies a pytree of host or single-device arrays (identical on every process) onto every device."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), tree)


def host_copy(tree):
    """A pytree of replicated global arrays as NumPy arrays on this host (reads one local replica, so it works
    on every process of a multi-process run without collectives)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf.addressable_data(0)) if isinstance(leaf, jax.Array)
                        else np.asarray(leaf), tree)
