"""The defocus refinement: its blur model fitted from a stack rendered with a known one, depth recovered from a
wrong prior, the streaming posterior against a dense one, no change where there is no texture, and its errors."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from dualfocus_jax.inference import defocus_refinement as refinement
from dualfocus_jax.inference import predict_depth
from dualfocus_jax.model import initial_params, model_config

FOCUS_U = np.array([0.2, 0.4, 0.6, 0.8, 1.0])  # diopters of five slices
TRUE_BLUR_SPAN = 2.0  # sigma (px) of a surface at one end of the focus range seen from the other end
SIZE = (64, 64)


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(rng.random(SIZE), 0.7) * 2.0 - 0.5, 0, 1)


def _two_plane_stack(aif_HW, u_left=0.35, u_right=0.85):
    """Slices of two fronto-parallel planes (left and right half) blurred as the model says, by SciPy per half:
    slice k of a plane at u is the image blurred by sigma = b·|u − u_k| / span."""
    span = FOCUS_U.max() - FOCUS_U.min()
    u_HW = np.where(np.arange(SIZE[1])[None, :] < SIZE[1] // 2, u_left, u_right) * np.ones(SIZE)
    slices = []
    for u_k in FOCUS_U:
        left = ndimage.gaussian_filter(aif_HW, TRUE_BLUR_SPAN * abs(u_left - u_k) / span)
        right = ndimage.gaussian_filter(aif_HW, TRUE_BLUR_SPAN * abs(u_right - u_k) / span)
        slices.append(np.where(u_HW == u_left, left, right))
    return np.stack(slices), u_HW


def _interior(u_HW):
    """Pixels at least 6 px from the image border and from the step between the planes."""
    mask = np.zeros(SIZE, bool)
    mask[6:-6, 6:SIZE[1] // 2 - 6] = True
    mask[6:-6, SIZE[1] // 2 + 6:-6] = True
    return mask


def test_the_blur_model_fitted_from_the_stack_is_the_one_it_was_rendered_with():
    aif = _texture()
    slices, _ = _two_plane_stack(aif)
    fit = refinement.fit_blur(slices, aif, FOCUS_U)
    assert abs(fit.blur_span_px / TRUE_BLUR_SPAN - 1) < 0.1
    assert fit.sharp_sigma_px <= 0.25  # rendered with no depth of field
    assert fit.gain > 0.9


def test_depth_is_recovered_from_a_wrong_prior_on_texture():
    aif = _texture(1)
    slices, u_true = _two_plane_stack(aif)
    span = FOCUS_U.max() - FOCUS_U.min()
    prior = np.full(SIZE, 0.6)  # the middle of the range for both planes
    result = refinement.refine_with_defocus(slices, aif, FOCUS_U, prior, np.full(SIZE, 0.3 * span))
    assert result.applied
    inside = _interior(u_true)
    assert np.median(np.abs(result.u_HW - u_true)[inside]) < 0.03 * span
    assert np.abs(prior - u_true)[inside].min() > 0.2 * span  # the prior alone was far off
    assert np.median(result.std_u_HW[inside]) < 0.3 * span  # the posterior is narrower than the prior


def test_the_streaming_posterior_equals_a_dense_one():
    aif = _texture(2)
    slices, _ = _two_plane_stack(aif)
    settings = refinement.DefocusRefinementSettings(candidates=24)
    fit = refinement.fit_blur(slices, aif, FOCUS_U, settings)
    rng = np.random.default_rng(3)
    prior, prior_std = rng.uniform(0.2, 1.0, SIZE), rng.uniform(0.01, 0.3, SIZE)
    result = refinement.refine_with_defocus(slices, aif, FOCUS_U, prior, prior_std, settings, fit=fit)

    # Dense reference: every candidate's error, then the posterior over all of them at once.
    candidates = np.linspace(FOCUS_U.min(), FOCUS_U.max(), settings.candidates)
    bank = refinement._BlurBank(aif, fit.blur_span_px)
    errors = np.stack(list(refinement._candidate_errors(slices.astype(np.float32), bank, FOCUS_U, candidates,
                                                        fit.blur_span_px, fit.sharp_sigma_px, settings.window)))
    std = np.maximum(prior_std, settings.prior_floor * 0.8)
    # The noise: the fit's, or a pixel's own best error per sample where that is larger (adaptive_noise).
    noise = np.maximum(fit.noise, errors.min(0) / (len(FOCUS_U) * settings.window ** 2))
    log_post = (-errors / (2 * noise * settings.window ** 2 * settings.likelihood_temperature)
                - 0.5 * ((candidates[:, None, None] - prior) / std) ** 2)
    weights = np.exp(log_post - log_post.max(0))
    weights /= weights.sum(0)
    mean = (weights * candidates[:, None, None]).sum(0)
    spread = np.sqrt((weights * (candidates[:, None, None] - mean) ** 2).sum(0))
    np.testing.assert_allclose(result.u_HW, mean, atol=1e-4)
    np.testing.assert_allclose(result.std_u_HW, spread, atol=2e-3)


def test_a_textureless_stack_keeps_the_prior():
    flat = np.full(SIZE, 0.5)
    slices = np.stack([flat] * len(FOCUS_U))
    prior, prior_std = np.full(SIZE, 0.45), np.full(SIZE, 0.1)
    result = refinement.refine_with_defocus(slices, flat, FOCUS_U, prior, prior_std)
    assert not result.applied
    np.testing.assert_array_equal(result.u_HW, prior.astype(np.float32))


@pytest.mark.parametrize("change, match", [
    (dict(focus=FOCUS_U[:4]), "focus positions"),
    (dict(prior=np.zeros((8, 8))), "prior"),
    (dict(focus=np.full(5, 0.5)), "distinct focus positions"),
])
def test_bad_input_is_refused_with_a_message(change, match):
    aif = _texture()
    slices, _ = _two_plane_stack(aif)
    args = dict(focus=FOCUS_U, prior=np.full(SIZE, 0.5))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        refinement.refine_with_defocus(slices, aif, args["focus"], args["prior"], np.full(args["prior"].shape, 0.1))


def test_predict_depth_refines_distances_and_skips_a_stack_given_by_its_order():
    config = model_config("small", "dualfocus")
    params = initial_params(config, jax.random.key(0))
    aif = _texture(4)
    slices, _ = _two_plane_stack(aif)
    stack = np.repeat(slices[..., None], 3, axis=-1).astype(np.float32)
    distances = 1.0 / FOCUS_U[::-1]  # ascending distances: the slices far to near
    refined = predict_depth(stack[::-1], distances, params=params, config=config, defocus_refinement=True)
    assert refined.defocus_fit is not None and abs(refined.defocus_fit.blur_span_px / TRUE_BLUR_SPAN - 1) < 0.2
    assert np.all(refined.depth_HW >= distances.min() - 1e-4) and np.all(refined.depth_HW <= distances.max() + 1e-4)
    ordered = predict_depth(stack, np.arange(5.0), params=params, config=config, focus_unit="order",
                            defocus_refinement=True)
    assert ordered.defocus_fit is None
    with pytest.raises(ValueError, match="defocus_refinement"):
        predict_depth(stack, distances, method="classical", defocus_refinement=True)
