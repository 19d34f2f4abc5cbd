"""`bench_model --parts` times the model's own parts: chained as the benchmark chains them, they compute the
depth the whole DualFocusNet computes (with and without the constraints), and each part gets a time and an XLA
FLOP count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import model_parts
from dualfocus_jax.model import DualFocusNet, abstract_params, initial_params, model_config

ALL_PARTS = ["input", "encoder", "focal volumes", "spatial branch", "3D decoder", "head", "unimodal projection",
             "outputs"]


def inputs(variant, abstract=False):
    config = model_config("small", variant)
    rng = np.random.default_rng(2)
    stack = jnp.asarray(rng.random((1, 4, 32, 40, 3), dtype=np.float32))
    focus = jnp.asarray([[0.9, 0.3, 1.4, 0.6]], jnp.float32)  # unsorted: the input part sorts
    params = abstract_params(config, 4, 32, 40) if abstract else initial_params(config, jax.random.key(1))
    return config, params, stack, focus


def test_the_chained_parts_compute_the_whole_models_depth():
    config, params, stack, focus = inputs("dualfocus")
    whole = jax.jit(lambda p, x, f: DualFocusNet(config).apply(p, x, f, train=False).depth)(params, stack, focus)
    chained = jax.jit(lambda p, x, f: model_parts.chained_outputs(config, p, x, f)[0])(params, stack, focus)
    np.testing.assert_allclose(np.asarray(chained), np.asarray(whole), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant, parts", [
    ("dualfocus", ALL_PARTS),
    ("dfv", [p for p in ALL_PARTS if p not in ("spatial branch", "unimodal projection")]),
    ("no_spatial", [p for p in ALL_PARTS if p != "spatial branch"]),
])
def test_the_chain_has_the_parts_of_each_variant_and_the_models_output_shape(variant, parts):
    config, params, stack, focus = inputs(variant, abstract=True)
    names = []

    def chained(p, x, f):
        depth, found = model_parts.chained_outputs(config, p, x, f)
        names.extend(found)
        return depth

    shapes = jax.eval_shape(chained, params, stack, focus)  # traced, not compiled
    whole = jax.eval_shape(lambda p, x, f: DualFocusNet(config).apply(p, x, f, train=False).depth, params, stack,
                           focus)
    assert names == parts and shapes.shape == whole.shape == (1, 32, 40)


def test_each_part_is_timed_with_its_flops():
    rows = model_parts.time_parts("small", "dualfocus", 3, 32, 32, repeats=1)
    assert [row["part"] for row in rows] == ALL_PARTS
    assert all(row["forward_s"] > 0 for row in rows)
    flops = {row["part"]: row["flops"] for row in rows}
    assert flops["encoder"] > 10 * flops["head"] > 0  # the convolutions carry the work
