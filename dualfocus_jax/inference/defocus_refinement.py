"""Depth refined by the blur each slice shows: the network's depth as a prior, a depth-from-defocus likelihood.

A focus-measure network places a surface by the slices in which it looks sharp. Where a surface looks sharp in
several neighbouring slices (a small blur span, a renderer or lens with a depth of field of a pixel or two),
that tells only an interval; the position inside it is in HOW blurred the other slices are. This step reads it
by re-blurring the all-in-focus image A: blur is linear in inverse distance (or in disparity), so slice k of a
surface at u shows A blurred by a Gaussian of standard deviation

    sigma_k(u) = b · |u − u_k| / (u_max − u_min)          (u: inverse focus distance or disparity)

where b, the blur at the far end of the focus range, is one number per stack, fitted from the stack itself (the
camera need not be known). Per pixel and candidate u, the squared difference between every slice and its
predicted blur, summed over a small window, is a likelihood; the network's depth and uncertainty are a Gaussian
prior over u; depth is the posterior mean. Where the window has no texture the likelihood is flat and the
network's depth stays; where no candidate explains the window (a depth edge, a misregistered patch), the
likelihood flattens by as much as its best error exceeds the noise; where the stack shows no blur that the fit
can use, nothing changes.

A Gaussian of the same second moment stands in for every PSF (a disc of diameter c has sigma = c/4, a Gaussian
drawn for a circle of confusion c the same), so the model is the same for every camera.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class DefocusRefinementSettings:
    """candidates: inverse-depth values tried between the nearest and farthest focus position; window: side of
    the square (pixels) the squared differences are summed over; blur_span_grid: the b values (sigma in pixels
    at the far end of the focus range) the per-stack fit chooses from; sharp_sigma_grid: the sigmas (pixels)
    below which a slice may render sharp, which the fit chooses from with b (0: no depth of field); fit_crop:
    side of the centre crop the fit uses (its cost grows with every model tried); likelihood_temperature:
    divides the log-likelihood (the window's squared differences are not independent); prior_scale: multiplies
    the network's standard deviation; prior_floor: the smallest prior standard deviation, as a share of the focus
    range; min_fit_gain: the fit must lower the crop's median error by this share against no blur at all, or
    the stack is left as the network gave it; adaptive_noise: a pixel whose best candidate
    leaves more error than the fit's noise level uses that error as its own noise level (a flatter likelihood
    where the single-depth model does not hold, as across depth edges)."""

    candidates: int = 64
    window: int = 5
    blur_span_grid: tuple[float, ...] = tuple(np.geomspace(0.1, 12.0, 25).round(4))
    fit_crop: int = 160
    likelihood_temperature: float = 4.0
    prior_floor: float = 0.02
    min_fit_gain: float = 0.3
    sharp_sigma_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    prior_scale: float = 1.0
    adaptive_noise: bool = True


DEFAULT_SETTINGS = DefocusRefinementSettings()


@dataclasses.dataclass(frozen=True)
class BlurFit:
    """The per-stack blur model: blur_span_px, b (sigma in pixels of a surface at one end of the focus range seen
    in the slice focused at the other end); sharp_sigma_px, the sigma below which a slice renders sharp (a depth
    of field); gain, the share of the median error with no blur at all that the model removes; noise, the
    median per-pixel best error per summed sample (the likelihood's variance)."""

    blur_span_px: float
    sharp_sigma_px: float
    gain: float
    noise: float


@dataclasses.dataclass(frozen=True)
class DefocusRefinement:
    """u_HW, std_u_HW: the posterior mean and standard deviation per pixel (the unit of the u given); fit: the
    stack's blur model; applied: False when the fit found no usable blur and u is the prior mean."""

    u_HW: np.ndarray
    std_u_HW: np.ndarray
    fit: BlurFit
    applied: bool


class _BlurBank:
    """The grey all-in-focus image blurred at a grid of sigmas (0.1 px steps to 1 px, then 8% steps); any sigma
    linearly interpolated between two."""

    def __init__(self, image_HW: np.ndarray, max_sigma: float):
        top = max(float(max_sigma), 1.0) * 1.08
        coarse = np.geomspace(1.0, top, max(2, int(np.ceil(np.log(top) / np.log(1.08))) + 1))
        self.sigmas = np.concatenate([np.arange(0.0, 1.0, 0.1), coarse])
        image = np.asarray(image_HW, np.float32)
        self.images = np.stack([image if s == 0 else ndimage.gaussian_filter(image, s, mode="reflect")
                                for s in self.sigmas])

    def blurred(self, sigma: float) -> np.ndarray:
        i = int(np.clip(np.searchsorted(self.sigmas, sigma) - 1, 0, len(self.sigmas) - 2))
        t = float(np.clip((sigma - self.sigmas[i]) / (self.sigmas[i + 1] - self.sigmas[i]), 0.0, 1.0))
        return (1.0 - t) * self.images[i] + t * self.images[i + 1]


def _sigma(blur_span: float, sharp_sigma: float, relative_defocus: float) -> float:
    sigma = blur_span * relative_defocus
    return sigma if sigma > sharp_sigma else 0.0


def _candidate_errors(slices_SHW, bank: _BlurBank, focus_u_S, candidates_J, blur_span: float, sharp_sigma: float,
                      window: int):
    """Yields (H, W) per candidate: Σ_k of the window-summed squared difference between slice k and its
    prediction (one at a time: a volume of them would not fit memory at a few megapixels)."""
    span = float(focus_u_S.max() - focus_u_S.min())
    for u in candidates_J:
        total = 0.0
        for k, u_k in enumerate(focus_u_S):
            total = total + (slices_SHW[k] - bank.blurred(_sigma(blur_span, sharp_sigma, abs(u - u_k) / span))) ** 2
        yield ndimage.uniform_filter(total, window, mode="reflect") * (window * window)


def _running_minimum(images):
    """The pixelwise minimum of an iterable of images, holding one at a time."""
    minimum = None
    for image in images:
        minimum = image if minimum is None else np.minimum(minimum, image)
    return minimum


def _centre_crop(array, crop: int):
    h, w = array.shape[-2:]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return array[..., top:top + crop, left:left + crop]


def fit_blur(slices_SHW, aif_HW, focus_u_S, settings: DefocusRefinementSettings = DEFAULT_SETTINGS) -> BlurFit:
    """The blur model whose per-pixel best error (over candidate depths) has the smallest median over a centre
    crop (the median, because windows across depth edges fit no single depth and would favour too little
    blur), first on the coarse grids, then b in 4% steps around the best."""
    slices = _centre_crop(np.asarray(slices_SHW, np.float32), settings.fit_crop)
    aif = _centre_crop(np.asarray(aif_HW, np.float32), settings.fit_crop)
    focus_u = np.asarray(focus_u_S, np.float64)
    candidates = np.linspace(focus_u.min(), focus_u.max(), settings.candidates // 2)
    bank = _BlurBank(aif, max(settings.blur_span_grid) * 1.25)

    def median_best_error(b: float, t: float) -> float:
        best = _running_minimum(_candidate_errors(slices, bank, focus_u, candidates, b, t, settings.window))
        return float(np.median(best))

    _, b, t = min((median_best_error(b, t), b, t) for b in settings.blur_span_grid for t in settings.sharp_sigma_grid)
    error, b = min((median_best_error(b * step, t), b * step) for step in 1.04 ** np.arange(-5, 6))
    samples = len(focus_u) * settings.window ** 2
    no_blur = float(np.median(ndimage.uniform_filter(((slices - aif[None]) ** 2).sum(0), settings.window))) * \
        settings.window ** 2
    # Slices that equal the all-in-focus image show no blur to read: nothing explained, gain 0.
    gain = 1.0 - error / no_blur if no_blur > 1e-10 * samples else 0.0
    return BlurFit(float(b), float(t), float(gain), max(error / samples, 1e-8))


def refine_with_defocus(slices_SHW, aif_HW, focus_u_S, prior_u_HW, prior_std_u_HW,
                        settings: DefocusRefinementSettings = DEFAULT_SETTINGS,
                        fit: BlurFit | None = None) -> DefocusRefinement:
    """Posterior mean and standard deviation of u per pixel (module docstring).

    Args:
      slices_SHW: (S, H, W) grey slices in [0, 1], in the order of focus_u_S.
      aif_HW: (H, W) grey all-in-focus image.
      focus_u_S: (S,) focus positions in a unit blur is linear in (inverse distance, diopters, disparity).
      prior_u_HW, prior_std_u_HW: the network's depth and its standard deviation in that unit.
      fit: the stack's blur model (None fits it, `fit_blur`).
    """
    slices = np.asarray(slices_SHW, np.float32)
    aif = np.asarray(aif_HW, np.float32)
    focus_u = np.asarray(focus_u_S, np.float64)
    prior = np.asarray(prior_u_HW, np.float64)
    prior_std = np.asarray(prior_std_u_HW, np.float64)
    if (slices.ndim != 3 or len(focus_u) != len(slices) or len(focus_u) < 2 or aif.shape != slices.shape[1:]
            or prior.shape != aif.shape or prior_std.shape != aif.shape):
        raise ValueError(f"defocus refinement needs (S, H, W) slices with S ≥ 2 focus positions and (H, W) images, "
                         f"got slices {slices.shape}, {len(focus_u)} focus positions, all-in-focus {aif.shape}, "
                         f"prior {prior.shape} and {prior_std.shape}.")
    span = float(focus_u.max() - focus_u.min())
    if not span > 0:
        raise ValueError(f"defocus refinement needs distinct focus positions, got {focus_u.tolist()}.")
    fit = fit if fit is not None else fit_blur(slices, aif, focus_u, settings)
    if fit.gain < settings.min_fit_gain:
        return DefocusRefinement(prior.astype(np.float32), prior_std.astype(np.float32), fit, False)
    candidates = np.linspace(focus_u.min(), focus_u.max(), settings.candidates)
    bank = _BlurBank(aif, fit.blur_span_px)
    std = np.maximum(settings.prior_scale * prior_std, settings.prior_floor * span)
    samples = len(focus_u) * settings.window ** 2
    noise = fit.noise
    if settings.adaptive_noise:
        # Where no candidate explains the window (across a depth edge, a moving or misregistered patch), the
        # residual is model error, not noise: the pixel's own best error per sample widens its likelihood there.
        best = _running_minimum(_candidate_errors(slices, bank, focus_u, candidates, fit.blur_span_px,
                                                  fit.sharp_sigma_px, settings.window))
        noise = np.maximum(fit.noise, best / samples)
    scale = 1.0 / (2.0 * noise * settings.window ** 2 * settings.likelihood_temperature)
    # Streaming log-sum-exp over the candidates: running maximum m, Σ w, Σ w·u, Σ w·u² (w = exp(log p − m)).
    peak = total = first = second = None
    errors = _candidate_errors(slices, bank, focus_u, candidates, fit.blur_span_px, fit.sharp_sigma_px,
                               settings.window)
    for u, error in zip(candidates, errors):
        log_post = -scale * error - 0.5 * ((u - prior) / std) ** 2
        if peak is None:
            peak, total, first, second = log_post, np.ones_like(log_post), np.full_like(log_post, u), \
                np.full_like(log_post, u * u)
            continue
        new_peak = np.maximum(peak, log_post)
        keep, weight = np.exp(peak - new_peak), np.exp(log_post - new_peak)
        total, first, second = total * keep + weight, first * keep + weight * u, second * keep + weight * u * u
        peak = new_peak
    mean = first / total
    variance = np.maximum(second / total - mean ** 2, 0.0)
    return DefocusRefinement(mean.astype(np.float32), np.sqrt(variance).astype(np.float32), fit, True)
