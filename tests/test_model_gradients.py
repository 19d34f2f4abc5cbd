"""Gradients of the total loss through the whole small model: finite everywhere, zero only where expected."""

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusNet, dualfocus_loss, initial_params, model_config


def flat_names(flat):
    return ["/".join(path) for path in flat]


def test_total_loss_gradients_are_finite_and_reach_the_parameters():
    config = model_config("small", "dualfocus")  # both constraints: every loss term and branch is in play
    model = DualFocusNet(config)
    params = initial_params(config, jax.random.key(1))
    rng = np.random.default_rng(0)
    b, s, h, w = 1, 4, 64, 64
    stack = jnp.asarray(rng.random((b, s, h, w, 3)).astype(np.float32))
    focus = jnp.asarray([[0.5, 1.0, 1.5, 2.0]], jnp.float32)
    # Ground truth: a slanted plane inside the focus range, a quarter of it invalid.
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    gt = jnp.asarray((0.6 + 1.3 * (rows + cols) / (h + w))[None].astype(np.float32))
    valid = jnp.asarray((rows >= h // 4)[None])

    def loss(p):
        return dualfocus_loss(model.apply(p, stack, focus, train=True), gt, valid, config)

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=FAST_COMPILE_OPTIONS)
    (total, parts), grads = value_and_grad(params)
    assert np.isfinite(float(total)) and all(np.isfinite(float(v)) for v in parts.values())
    assert float(parts["spatial"]) > 0 and float(parts["focal"]) >= 0 and float(parts["depth"]) > 0

    flat = flax.traverse_util.flatten_dict(grads["params"])
    for path, grad in flat.items():
        assert np.isfinite(np.asarray(grad)).all(), path
    zero = sorted("/".join(path) for path, grad in flat.items() if not np.any(np.asarray(grad)))
    # The only zero gradients allowed: the residual branch of each trunk block, whose output is multiplied by
    # its zero-initialised bn2 scale (identity-at-init blocks); that scale itself must receive gradient, so the
    # branches open after the first step.
    branch = ("conv1/kernel", "bn1/scale", "bn1/bias", "conv2/kernel")
    # The bias of each level's final cost conv shifts every focal plane's logit alike, and the softmax over
    # the focal axis cancels a shift: its gradient is zero in exact arithmetic, so it may round to exactly 0.
    shift_invariant = [name for name in flat_names(flat) if name.endswith("classify2/bias")]
    for name in shift_invariant:
        kernel = np.abs(np.asarray(flat[tuple(name.replace("bias", "kernel").split("/"))])).max()
        assert np.abs(np.asarray(flat[tuple(name.split("/"))])).max() <= 1e-4 * max(kernel, 1e-12), name
    zero = [name for name in zero if name not in shift_invariant]
    assert all(name.startswith("encoder/trunk/layer") and name.endswith(branch) for name in zero), zero
    blocks = [path[2] for path in flat if path[:2] == ("encoder", "trunk") and path[2].startswith("layer")]
    for block in set(blocks):
        assert np.any(np.asarray(flat[("encoder", "trunk", block, "bn2", "scale")])), block
    assert len(zero) <= len(branch) * sum(config.encoder_blocks)
    assert len(zero) < 0.1 * len(flat)
    # The spatial branch and θ receive gradient (through L_sv and through the decoder).
    assert np.any(np.asarray(flat[("spatial_branch", "theta_out", "kernel")]))
    assert np.any(np.asarray(flat[("spatial_branch", "gradient_fields", "kernel")]))
