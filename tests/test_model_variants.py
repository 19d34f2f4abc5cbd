"""Variants share what they should: with the same parameters, dualfocus and no_focal give the same outputs
in training and differ only by the λ_fv·L_fv term of the loss; at inference only dualfocus projects p."""

import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusNet, dualfocus_loss, initial_params, model_config


def test_dualfocus_and_no_focal_differ_only_by_the_focal_term():
    full = model_config("small", "dualfocus", lambda_fv=3.0)
    no_focal = model_config("small", "no_focal")
    params = initial_params(full, jax.random.key(2))
    rng = np.random.default_rng(3)
    stack = jnp.asarray(rng.random((1, 3, 32, 32, 3)).astype(np.float32))
    focus = jnp.asarray([[2.0, 1.0, 3.0]], jnp.float32)  # unsorted on purpose
    gt = jnp.asarray(rng.uniform(1.0, 3.0, size=(1, 32, 32)).astype(np.float32))
    valid = jnp.ones((1, 32, 32), bool)

    def run(config, train):
        def forward(p, x, f):
            outputs = DualFocusNet(config).apply(p, x, f, train=train)
            return outputs, (dualfocus_loss(outputs, gt, valid, config) if train else None)
        return jax.jit(forward, compiler_options=FAST_COMPILE_OPTIONS)(params, stack, focus)

    out_full, (total_full, parts_full) = run(full, True)
    out_nf, (total_nf, parts_nf) = run(no_focal, True)
    for key in ("depth", "prob", "uncertainty", "all_in_focus", "surface_gradients"):
        np.testing.assert_array_equal(np.asarray(out_full[key]), np.asarray(out_nf[key]), err_msg=key)
    for key in ("depth", "spatial", "focal"):
        np.testing.assert_allclose(float(parts_full[key]), float(parts_nf[key]), rtol=1e-6, err_msg=key)
    assert float(parts_full["focal"]) > 0  # an untrained network is not unimodal everywhere
    np.testing.assert_allclose(float(total_full - total_nf), 3.0 * float(parts_full["focal"]), rtol=1e-4)

    # At inference the focal constraint is enforced (projection) only by dualfocus.
    infer_full, _ = run(full, False)
    infer_nf, _ = run(no_focal, False)
    np.testing.assert_array_equal(np.asarray(infer_nf["prob"]), np.asarray(out_nf["prob"]))
    assert not np.allclose(np.asarray(infer_full["prob"]), np.asarray(out_full["prob"]))
