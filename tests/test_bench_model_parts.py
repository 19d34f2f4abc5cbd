"""`bench_model --parts` times the model's own parts: chained as the benchmark chains them, they compute the
depth the whole DualFocusNet computes (for every variant), and each part gets a time and an XLA FLOP count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import model_parts
from dualfocus_jax.model import DualFocusNet, initial_params, model_config


@pytest.mark.parametrize("variant", ["dualfocus", "dfv", "no_spatial", "no_focal"])
def test_the_chained_parts_compute_the_whole_models_depth(variant):
    config = model_config("small", variant)
    params = initial_params(config, jax.random.key(1))
    rng = np.random.default_rng(2)
    stack = jnp.asarray(rng.random((1, 4, 40, 56, 3), dtype=np.float32))
    focus = jnp.asarray([[0.9, 0.3, 1.4, 0.6]], jnp.float32)  # unsorted: the input part sorts
    whole = DualFocusNet(config).apply(params, stack, focus, train=False).depth
    chained = model_parts.chained_outputs(config, params, stack, focus)
    np.testing.assert_allclose(np.asarray(chained), np.asarray(whole), rtol=1e-4, atol=1e-5)


def test_each_part_is_timed_with_its_flops():
    rows = model_parts.time_parts("small", "dualfocus", 3, 32, 32, repeats=1)
    names = [row["part"] for row in rows]
    assert names == ["input", "encoder", "focal volumes", "spatial branch", "3D decoder", "head",
                     "unimodal projection", "outputs"]
    assert all(row["forward_s"] > 0 for row in rows)
    flops = {row["part"]: row["flops"] for row in rows}
    assert flops["encoder"] > 10 * flops["head"] > 0  # the convolutions carry the work
    assert "spatial branch" not in [row["part"] for row in model_parts.time_parts("small", "dfv", 3, 32, 32, 1)]
