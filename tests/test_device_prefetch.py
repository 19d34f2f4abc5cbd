"""Batches sent to the devices ahead of use and as uint8 (dualfocus_jax/training/device_prefetch.py): the
position a checkpoint stores is that of the batches handed out, a resume continues with the same batches,
and a uint8 stack trains exactly like the float32 stack it rounds to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.training import mesh as mesh_lib
from dualfocus_jax.training.device_prefetch import DevicePrefetcher, quantised_stack, stack_as_float
from dualfocus_jax.training.input_pipeline import training_dataset, training_iterator
from test_train_data import tiny_focal_example, tiny_input_config

RECORDS = {"tiny": [tiny_focal_example("train", i) for i in range(6)]}


def _iterator(stack_dtype="uint8"):
    config = tiny_input_config("", batch=2)
    config.stack_dtype = stack_dtype
    return training_iterator(config, seed=4, records_by_source=RECORDS)


@pytest.fixture(scope="module")
def mesh():
    return mesh_lib.data_parallel_mesh()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_stored_position_is_after_the_last_batch_handed_out(mesh, depth):
    reference = [batch["stack"] for batch, _ in zip(_iterator(), range(7))]
    prefetcher = DevicePrefetcher(_iterator(), mesh, depth=depth)
    for index in range(3):
        np.testing.assert_array_equal(np.asarray(next(prefetcher)["stack"]), reference[index])
    saved = prefetcher.get_state()  # a checkpoint after update 3, with depth − 1 batches already sent ahead
    resumed = DevicePrefetcher(_iterator(), mesh, depth=depth)
    resumed.set_state(saved)
    for index in range(3, 7):
        batch = next(resumed)
        assert isinstance(batch["stack"], jax.Array) and batch["stack"].sharding == mesh_lib.batch_sharding(mesh)
        np.testing.assert_array_equal(np.asarray(batch["stack"]), reference[index])


def test_a_fresh_prefetcher_stores_the_start_and_rejects_no_buffer(mesh):
    prefetcher = DevicePrefetcher(_iterator(), mesh)
    assert prefetcher.get_state() == _iterator().get_state()
    with pytest.raises(ValueError, match="device_prefetch must be ≥ 1"):
        DevicePrefetcher(_iterator(), mesh, depth=0)


def test_uint8_stacks_are_the_float_stacks_rounded_to_256_levels():
    config = tiny_input_config("", batch=2)
    config.stack_dtype = "float32"
    floats = training_dataset(config, seed=1, records_by_source=RECORDS)[0]
    config.stack_dtype = "uint8"
    quantised = training_dataset(config, seed=1, records_by_source=RECORDS)[0]
    assert floats["stack"].dtype == np.float32 and quantised["stack"].dtype == np.uint8
    np.testing.assert_allclose(quantised["stack"] / 255.0, floats["stack"], atol=0.5 / 255 + 1e-7)
    for key in ("focus", "depth", "valid"):
        np.testing.assert_array_equal(quantised[key], floats[key])
    config.stack_dtype = "float16"
    with pytest.raises(ValueError, match="stack_dtype must be one of"):
        training_dataset(config, seed=1, records_by_source=RECORDS)


def test_auto_sends_uint8_to_accelerators_and_keeps_float32_on_a_cpu():
    from dualfocus_jax.training.device_prefetch import transfer_dtype

    assert transfer_dtype("auto", "gpu") == transfer_dtype("auto", "tpu") == "uint8"
    assert transfer_dtype("auto", "cpu") == "float32"  # the CPU recipes train on the same data as before
    assert transfer_dtype("uint8", "cpu") == "uint8"


def test_the_device_side_conversion_restores_the_rounded_values():
    """What the update step does with a uint8 stack (train_step.py applies stack_as_float to every batch; a
    uint8 batch through the real step is in test_mixed_precision.py)."""
    values = np.random.default_rng(0).random((2, 3, 8, 8, 3)).astype(np.float32)
    quantised = quantised_stack({"stack": values})["stack"]
    restored = np.asarray(stack_as_float(jnp.asarray(quantised)))
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, np.round(values * 255) / 255, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(stack_as_float(jnp.asarray(values))), values)


def test_worker_processes_give_the_batches_of_the_threads_and_resume_alike():
    config = tiny_input_config("", batch=2)
    threads = training_iterator(config, seed=4, records_by_source=RECORDS)
    expected = [next(threads)["stack"] for _ in range(5)]
    config.num_workers = 2
    workers = training_iterator(config, seed=4, records_by_source=RECORDS)
    for index in range(3):
        np.testing.assert_array_equal(next(workers)["stack"], expected[index])
    saved = workers.get_state()
    resumed = training_iterator(config, seed=4, records_by_source=RECORDS)
    resumed.set_state(saved)
    for index in range(3, 5):
        np.testing.assert_array_equal(next(resumed)["stack"], expected[index])
