"""predict_depth(flips=True): the network's probabilities averaged over the stack's four mirror images."""

import jax
import numpy as np
import pytest

from dualfocus_jax.inference import predict_depth
from dualfocus_jax.inference.traced_network import network_probabilities
from dualfocus_jax.model import initial_params, model_config

CONFIG = model_config("small", "dualfocus")


def _stack(seed=0, s=4, h=24, w=40):
    rng = np.random.default_rng(seed)
    return rng.random((s, h, w, 3)).astype(np.float32), np.asarray([0.5, 0.8, 1.3, 2.0])


def test_mirror_averaged_probabilities_match_a_numpy_average_and_mirror_with_the_input():
    params = initial_params(CONFIG, jax.random.key(0))
    stack, focus = _stack()
    averaged = predict_depth(stack, focus, params=params, config=CONFIG, flips=True)
    plain = predict_depth(stack, focus, params=params, config=CONFIG)

    # Reference: the four passes, each mirrored back, averaged with NumPy.
    passes = []
    for rows in (False, True):
        for cols in (False, True):
            axes = tuple(a for a, flip in ((1, rows), (2, cols)) if flip)
            mirrored = np.flip(stack, axes) if axes else stack
            prob, _ = network_probabilities(params, CONFIG, mirrored)
            passes.append(np.flip(np.asarray(prob), axes) if axes else np.asarray(prob))
    np.testing.assert_allclose(averaged.weights_SHW, np.mean(passes, axis=0), atol=1e-6)
    assert np.max(np.abs(averaged.depth_HW - plain.depth_HW)) > 1e-4  # the passes do differ

    # Exactly equivariant: the prediction of a mirrored stack is the mirrored prediction.
    mirrored = predict_depth(stack[:, :, ::-1], focus, params=params, config=CONFIG, flips=True)
    np.testing.assert_allclose(mirrored.depth_HW, averaged.depth_HW[:, ::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mirrored.all_in_focus_HWC, averaged.all_in_focus_HWC[:, ::-1], atol=1e-5)


def test_flips_for_the_classical_method_is_an_error():
    stack, focus = _stack()
    with pytest.raises(ValueError, match="flips"):
        predict_depth(stack, focus, method="classical", flips=True)
