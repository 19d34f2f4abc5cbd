"""Appearance for the focal-stack engine: the photographs scikit-image ships, cut, scaled, rotated and
recoloured, and procedural textures (fractal noise, stripes, checkers, text, gradients).

Every texture is an (H, W, 3) float32 image in [0, 1] drawn from a `numpy.random.Generator`. `texture_kinds`
tags the ones whose detail is fine and edge-like (stripes, checkers, text, fine photographs): on a smooth
surface they are the texture that looks like a depth edge, the case DualFocus's spatial constraint targets.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skimage_data

# Real photographs bundled with scikit-image (no download); grey ones are recoloured.
PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
               "camera", "brick", "grass", "gravel", "moon", "coins", "page", "text", "clock", "horse",
               "cat", "retina", "colorwheel", "cell")
FINE_PHOTOGRAPHS = ("grass", "gravel", "brick", "text", "page", "cell")
TEXTURE_KINDS = ("photo", "fine_photo", "fractal_noise", "stripes", "checkers", "text", "gradient")
EDGE_LIKE_KINDS = ("fine_photo", "stripes", "checkers", "text")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.cache
def photograph(name: str, octave: int = 0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] (grey photographs repeated over 3 channels), downscaled 2^octave times
    with a prefilter (a pyramid, so minified cuts do not alias and need no filtering per draw)."""
    if octave > 0:
        finer = photograph(name, octave - 1)
        return scipy.ndimage.gaussian_filter(finer, (1.0, 1.0, 0))[::2, ::2].copy()
    array = np.asarray(getattr(skimage_data, name)())
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    array = array[..., :3].astype(np.float32)
    return array / 255.0 if array.max() > 1.0 else array


def _recoloured(rng: np.random.Generator, image_HW3: np.ndarray) -> np.ndarray:
    """Random colour mixing (a near-identity 3×3 matrix, or a tint of a grey image), contrast and brightness."""
    if np.allclose(image_HW3[..., 0], image_HW3[..., 1]) or rng.random() < 0.3:
        luminance = image_HW3.mean(axis=-1, keepdims=True)
        colour_a, colour_b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        image_HW3 = colour_a * (1 - luminance) + colour_b * luminance
    else:
        mixing = np.eye(3) + rng.normal(0, 0.15, (3, 3))
        image_HW3 = image_HW3 @ mixing.T.astype(np.float32)
    mean = image_HW3.mean()
    # Contrast: a random factor, but never below a standard deviation of 0.04 (a texture that is there at all;
    # flat regions are the textureless family's job).
    contrast = rng.uniform(0.5, 1.3) * max(1.0, 0.04 / max(float(image_HW3.std()), 1e-6))
    image_HW3 = (image_HW3 - mean) * contrast + mean + rng.uniform(-0.15, 0.15)
    return np.clip(image_HW3, 0, 1).astype(np.float32)


def photo_texture(rng: np.random.Generator, size: tuple[int, int], names=PHOTOGRAPHS,
                  zoom_range=(0.3, 1.5)) -> np.ndarray:
    """A rotated, scaled cut of a photograph (zoom < 1 shows more of the photograph: finer detail)."""
    height, width = size
    zoom = float(np.exp(rng.uniform(np.log(zoom_range[0]), np.log(zoom_range[1]))))
    octave = int(np.clip(np.floor(-np.log2(zoom)), 0, 2))
    photo = photograph(names[rng.integers(len(names))], octave)
    zoom *= 2 ** octave
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, cols = (rows - height / 2) / zoom, (cols - width / 2) / zoom
    half_extent = 0.5 * np.hypot(height, width) / zoom
    centre_r = rng.uniform(min(half_extent, photo.shape[0] / 2), max(photo.shape[0] - half_extent, photo.shape[0] / 2))
    centre_c = rng.uniform(min(half_extent, photo.shape[1] / 2), max(photo.shape[1] - half_extent, photo.shape[1] / 2))
    source_r = centre_r + np.cos(angle) * rows - np.sin(angle) * cols
    source_c = centre_c + np.sin(angle) * rows + np.cos(angle) * cols
    channels = [scipy.ndimage.map_coordinates(photo[..., c], [source_r, source_c], order=1, mode="mirror")
                for c in range(3)]
    texture = np.stack(channels, axis=-1)
    if rng.random() < 0.5:
        texture = texture[:, ::-1]
    return _recoloured(rng, texture)


def fractal_noise(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Coloured 1/f^β noise (β in [1, 2.5]): smooth to rough natural-looking surfaces."""
    height, width = size
    beta = rng.uniform(1.0, 2.5)
    freq_y = np.fft.fftfreq(height)[:, None]
    freq_x = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(freq_y, freq_x), 1.0 / max(height, width)) ** (beta / 2 * 2)
    spectrum = amplitude * (rng.normal(size=(3,) + amplitude.shape) + 1j * rng.normal(size=(3,) + amplitude.shape))
    noise = np.fft.irfft2(spectrum, s=(height, width))
    # Channels share most of their structure (natural surfaces are not independently noisy per colour).
    grey = noise.mean(axis=0)
    noise = 0.7 * grey + 0.3 * noise
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-9)
    return _recoloured(rng, np.moveaxis(noise, 0, -1).astype(np.float32))


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    first = rng.uniform(0, 1, 3)
    second = np.clip(first + rng.choice([-1, 1]) * rng.uniform(0.3, 0.8) * rng.uniform(0.5, 1, 3), 0, 1)
    return first.astype(np.float32), second.astype(np.float32)


def stripes(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Straight or wavy stripes, period 2–24 px, hard or soft edges."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = float(np.exp(rng.uniform(np.log(2.0), np.log(24.0))))
    coordinate = np.cos(angle) * cols + np.sin(angle) * rows
    if rng.random() < 0.3:
        coordinate = coordinate + rng.uniform(2, 8) * np.sin(2 * np.pi * (np.sin(angle) * cols - np.cos(angle) * rows)
                                                             / rng.uniform(20, 80))
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * coordinate / period)
    if rng.random() < 0.6:
        wave = (wave > 0.5).astype(np.float32)
    first, second = _two_colours(rng)
    return (first * (1 - wave[..., None]) + second * wave[..., None]).astype(np.float32)


def checkers(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A rotated checkerboard, cells 2–20 px."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi / 2)
    cell = float(np.exp(rng.uniform(np.log(2.0), np.log(20.0))))
    u = (np.cos(angle) * cols + np.sin(angle) * rows) / cell
    v = (-np.sin(angle) * cols + np.cos(angle) * rows) / cell
    board = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    first, second = _two_colours(rng)
    return (first * (1 - board[..., None]) + second * board[..., None]).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _font(size_px: int):
    return ImageFont.load_default(size=size_px)


def text_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Lines of random characters (a page of print), glyphs 6–28 px high."""
    height, width = size
    background, ink = _two_colours(rng)
    glyph = int(np.exp(rng.uniform(np.log(6), np.log(28))))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    font = _font(glyph)
    line_height = int(glyph * rng.uniform(1.1, 1.6))
    for top in range(-glyph // 2, height, max(line_height, 2)):
        count = width // max(glyph // 2, 1) + 2
        line = "".join(_LETTERS[i] if rng.random() > 0.15 else " " for i in rng.integers(len(_LETTERS), size=count))
        draw.text((int(rng.integers(-glyph, 1)), top), line, fill=255, font=font)
    mask = np.asarray(canvas, np.float32)[..., None] / 255.0
    return (background * (1 - mask) + ink * mask).astype(np.float32)


def gradient(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth linear or radial colour gradient: almost no focus cue."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * cols + np.sin(angle) * rows
    else:
        ramp = np.hypot(rows - rng.uniform(0, height), cols - rng.uniform(0, width))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    first, second = _two_colours(rng)
    return (first * (1 - ramp[..., None]) + second * ramp[..., None]).astype(np.float32)


def texture(rng: np.random.Generator, size: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """One texture of `kind` (TEXTURE_KINDS; None draws one, photographs half of the time)."""
    if kind is None:
        kind = str(rng.choice(TEXTURE_KINDS, p=[0.4, 0.1, 0.2, 0.08, 0.07, 0.08, 0.07]))
    if kind == "photo":
        return photo_texture(rng, size)
    if kind == "fine_photo":
        return photo_texture(rng, size, FINE_PHOTOGRAPHS, (0.2, 0.5))
    if kind == "fractal_noise":
        return fractal_noise(rng, size)
    if kind == "stripes":
        return stripes(rng, size)
    if kind == "checkers":
        return checkers(rng, size)
    if kind == "text":
        return text_texture(rng, size)
    if kind == "gradient":
        return gradient(rng, size)
    raise ValueError(f"unknown texture kind {kind!r}; choose one of {TEXTURE_KINDS}.")
