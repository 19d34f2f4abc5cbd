"""Spatial branch: surfaces from the solvers, their normalisation, and the branch's outputs."""

import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, model_config
from dualfocus_jax.model.spatial_branch import SpatialBranch, integrated_surfaces, normalised_surfaces
from dualfocus_jax.variational import integrate_gradients_dct


def test_integrated_surfaces_recover_a_known_surface_per_channel():
    # K = 2 channels of exactly integrable fields (forward differences of known zero-mean surfaces): the
    # least-squares surface is the surface itself, in the channel it came from.
    rng = np.random.default_rng(0)
    b, s, h, w, k = 1, 2, 6, 7, 2
    z = rng.normal(size=(b, s, h, w, k)).astype(np.float32)
    z -= z.mean(axis=(2, 3), keepdims=True)
    gx = np.zeros_like(z)
    gy = np.zeros_like(z)
    gx[:, :, :, :-1] = z[:, :, :, 1:] - z[:, :, :, :-1]
    gy[:, :, :-1] = z[:, :, 1:] - z[:, :, :-1]
    got = np.asarray(integrated_surfaces(jnp.asarray(gx), jnp.asarray(gy), solver="dct", cg_iters=1))
    np.testing.assert_allclose(got, z, atol=1e-4)
    cg = np.asarray(integrated_surfaces(jnp.asarray(gx), jnp.asarray(gy), solver="cg", cg_iters=200))
    np.testing.assert_allclose(cg, z, atol=1e-3)


def test_normalised_surfaces_share_one_scale_per_channel_across_the_stack():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 3, 4, 5, 2)).astype(np.float32)
    z[:, 0] *= 10.0  # a dominant plane
    z[1] *= 7.0  # another example at another scale
    got = np.asarray(normalised_surfaces(jnp.asarray(z)))
    np.testing.assert_allclose(np.sqrt((got ** 2).mean(axis=(1, 2, 3))), 1.0, rtol=1e-4)
    expected = z / np.sqrt((z ** 2).mean(axis=(1, 2, 3), keepdims=True) + 1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # One divisor per example and channel: the energy ratio between planes survives.
    energy = lambda a, plane: (a[:, plane] ** 2).mean(axis=(1, 2))  # noqa: E731
    np.testing.assert_allclose(energy(got, 0) / energy(got, 1), energy(z, 0) / energy(z, 1), rtol=1e-4)
    assert (energy(got, 0) > 20 * energy(got, 1)).all()

def test_branch_outputs_at_the_solver_resolution_with_either_solver():
    rng = np.random.default_rng(2)
    b, s = 1, 3
    context = jnp.asarray(rng.normal(size=(b, s, 2, 2, 12)).astype(np.float32))  # 1/32 of 64×64
    detail = jnp.asarray(rng.normal(size=(b, s, 8, 8, 10)).astype(np.float32))  # 1/8
    results = {}
    for solver in ("dct", "cg"):
        config = model_config("small", solver=solver, solver_stride=8, cg_iters=300)
        branch = SpatialBranch(config)
        params = jax.jit(branch.init, compiler_options=FAST_COMPILE_OPTIONS)(jax.random.key(0), context, detail)
        out = jax.jit(branch.apply, compiler_options=FAST_COMPILE_OPTIONS)(params, context, detail)
        k = config.surface_channels
        assert out["surfaces"].shape == (b, s, 8, 8, k)
        assert out["surface_gradients"].shape == (b, s, 8, 8, 2)
        assert out["gradient_fields"].shape == (b, s, 8, 8, 2 * k)
        # The surfaces are the normalised least-squares integrals of the branch's own fields.
        fields = out["gradient_fields"]
        z = jnp.moveaxis(integrate_gradients_dct(jnp.moveaxis(fields[..., :k], -1, 2),
                                                 jnp.moveaxis(fields[..., k:], -1, 2)), 2, -1)
        np.testing.assert_allclose(np.asarray(out["surfaces"]), np.asarray(normalised_surfaces(z)), atol=2e-3)
        results[solver] = out
    # Same initialisation key, same architecture: the two solvers agree once CG has converged.
    np.testing.assert_allclose(np.asarray(results["cg"]["surfaces"]), np.asarray(results["dct"]["surfaces"]),
                               atol=2e-3)
