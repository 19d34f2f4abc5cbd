"""Variants share what they should: with the same parameters, dualfocus and no_focal give the same outputs
in training and differ only by the λ_fv·L_fv term of the loss; at inference only dualfocus projects p. Every
variant returns a DualFocusOutput whose surface_gradients is None exactly when it has no spatial branch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model import (
    FAST_COMPILE_OPTIONS,
    VARIANTS,
    DualFocusNet,
    DualFocusOutput,
    abstract_params,
    dualfocus_loss,
    initial_params,
    model_config,
)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("train", [True, False])
def test_every_variant_returns_a_typed_output_with_surface_gradients_only_with_the_spatial_branch(variant, train):
    # Shapes only (jax.eval_shape traces, compiles nothing): 3 slices of 40×50, padded to 64×64 inside.
    config = model_config("small", variant)
    b, s, h, w = 2, 3, 40, 50
    stack = jax.ShapeDtypeStruct((b, s, h, w, 3), jnp.float32)
    focus = jax.ShapeDtypeStruct((b, s), jnp.float32)
    out = jax.eval_shape(lambda p, x, f: DualFocusNet(config).apply(p, x, f, train=train),
                         abstract_params(config), stack, focus)
    assert type(out) is DualFocusOutput
    expected = dict(depth=(b, h, w), uncertainty=(b, h, w), prob=(b, s, h, w), all_in_focus=(b, h, w, 3),
                    focus_positions=(b, s))
    for name, shape in expected.items():
        assert (getattr(out, name).shape, getattr(out, name).dtype) == (shape, jnp.float32), name
    assert [(d.shape, d.dtype) for d in out.depth_levels] == [((b, h, w), jnp.float32)] * 4
    if config.use_spatial:
        grid = 64 // config.solver_stride
        assert (out.surface_gradients.shape, out.surface_gradients.dtype) == ((b, s, grid, grid, 2), jnp.float32)
    else:
        assert out.surface_gradients is None
    assert (out.surface_gradients is None) == (variant in ("no_spatial", "dfv", "fv"))


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
        np.testing.assert_array_equal(np.asarray(getattr(out_full, key)), np.asarray(getattr(out_nf, key)), err_msg=key)
    for key in ("depth", "spatial", "focal"):
        np.testing.assert_allclose(float(parts_full[key]), float(parts_nf[key]), rtol=1e-6, err_msg=key)
    assert float(parts_full["focal"]) > 0  # an untrained network is not unimodal everywhere
    np.testing.assert_allclose(float(total_full - total_nf), 3.0 * float(parts_full["focal"]), rtol=1e-4)

    # At inference the focal constraint is enforced (projection) only by dualfocus.
    infer_full, _ = run(full, False)
    infer_nf, _ = run(no_focal, False)
    np.testing.assert_array_equal(np.asarray(infer_nf.prob), np.asarray(out_nf.prob))
    assert not np.allclose(np.asarray(infer_full.prob), np.asarray(out_full.prob))
