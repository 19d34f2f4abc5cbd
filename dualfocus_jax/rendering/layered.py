"""Occlusion-aware layered defocus: depth layers blurred separately and composited back to front.

Per-pixel blurring (the Gaussian mode in `thin_lens`) cannot let a blurred foreground spread over the
sharp background next to it: each output pixel only gathers from its neighbours. A layered renderer
models the lens the other way round. The scene is cut into fronto-parallel layers; each layer's colour
(premultiplied by its binary coverage) and its coverage (alpha) are blurred with that layer's own PSF;
the blurred layers are composited with the "over" operator from far to near, and the result is divided
by the accumulated blurred alpha so that the holes a foreground leaves in the layer behind it (the
disocclusion problem: the background there is unknown) do not darken the image.

This module is optics-free: it assigns pixels to layers and composites layers for given Gaussian
widths. `thin_lens.render_focal_stack(mode="layered")` turns depths and focus positions into widths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this accumulated alpha a pixel received no layer at all; it keeps its input colour.
_MIN_ACCUMULATED_ALPHA = 1e-12


def valid_depth_mask(depth_HW: jnp.ndarray) -> jnp.ndarray:
    """Returns (H, W) bool: True where depth is a usable distance (finite and > 0)."""
    return jnp.isfinite(depth_HW) & (depth_HW > 0)


def assign_inverse_depth_layers(depth_HW: jnp.ndarray, num_layers: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Quantises depth into `num_layers` layers, uniform in inverse depth, layer 0 the farthest.

    Inverse depth is used because the thin-lens circle of confusion is linear in 1/depth
    (c ∝ |1/f − 1/d|), so equal steps in 1/d are equal steps in blur: no layer wastes its budget on
    far depths where the blur hardly changes.

    Args:
      depth_HW: (H, W) depth, any positive unit. Pixels with depth <= 0 or non-finite are invalid and go
        to the farthest layer (layer 0): a pixel of unknown depth is best drawn first, so that every
        valid surface is composited over it.
      num_layers: L >= 1 (static).

    Returns:
      layer_index_HW: (H, W) int32 in [0, L-1], larger index = nearer.
      layer_depth_L: (L,) float32 representative depth of each layer, in the unit of `depth_HW`: the
        reciprocal of the mean inverse depth of the layer's valid pixels (so a piecewise-constant depth
        map is reproduced exactly), or of the bin centre for a layer without valid pixels. If the map has
        no valid pixel at all, every layer has depth 1.
    """
    depth_HW = jnp.asarray(depth_HW, jnp.float32)
    valid_HW = valid_depth_mask(depth_HW)
    any_valid = jnp.any(valid_HW)
    inverse_HW = jnp.where(valid_HW, 1.0 / jnp.where(valid_HW, depth_HW, 1.0), 0.0)
    inverse_lo = jnp.where(any_valid, jnp.min(jnp.where(valid_HW, inverse_HW, jnp.inf)), 1.0)
    inverse_hi = jnp.where(any_valid, jnp.max(jnp.where(valid_HW, inverse_HW, -jnp.inf)), 1.0)
    inverse_HW = jnp.where(valid_HW, inverse_HW, inverse_lo)
    span = inverse_hi - inverse_lo
    has_span = span > 0
    position_HW = jnp.where(has_span, (inverse_HW - inverse_lo) / jnp.where(has_span, span, 1.0), 0.0)
    layer_index_HW = jnp.clip(jnp.floor(position_HW * num_layers).astype(jnp.int32), 0, num_layers - 1)

    members_HWL = (layer_index_HW[..., None] == jnp.arange(num_layers)) & valid_HW[..., None]
    member_count_L = jnp.sum(members_HWL, axis=(0, 1))
    inverse_sum_L = jnp.sum(jnp.where(members_HWL, inverse_HW[..., None], 0.0), axis=(0, 1))
    bin_centre_L = inverse_lo + (jnp.arange(num_layers, dtype=jnp.float32) + 0.5) * span / num_layers
    inverse_L = jnp.where(member_count_L > 0, inverse_sum_L / jnp.maximum(member_count_L, 1), bin_centre_L)
    return layer_index_HW, (1.0 / inverse_L).astype(jnp.float32)


def gaussian_blur_matrices(sigma_px_L: jnp.ndarray, size: int) -> jnp.ndarray:
    """Dense 1-D Gaussian blur operators, one per width.

    Args:
      sigma_px_L: (L,) standard deviations in pixels; 0 gives the identity (exactly).
      size: n, the length of the axis to blur (static).

    Returns:
      (L, n, n) float32 matrices G with G[i, j] = exp(-(i-j)^2 / (2 σ^2)) / Z. Z sums the kernel over all
      offsets -(n-1)..(n-1), so a row far from the border sums to 1 and rows near the border sum to less:
      the image is treated as zero outside, and what falls off the edge is lost. Dense matrices rather
      than convolutions because σ is data dependent (no static kernel size) and a matmul is the fastest
      such operator on CPU and accelerators at these sizes.
    """
    sigma_px_L = jnp.asarray(sigma_px_L, jnp.float32)
    blurs = sigma_px_L > 0
    inverse_two_var_L = jnp.where(blurs, 0.5 / jnp.square(jnp.where(blurs, sigma_px_L, 1.0)), 0.0)
    offsets = jnp.arange(size, dtype=jnp.float32)
    squared_offset_nn = jnp.square(offsets[:, None] - offsets[None, :])
    all_offsets = jnp.arange(-(size - 1), size, dtype=jnp.float32)
    weights_Lnn = jnp.exp(-inverse_two_var_L[:, None, None] * squared_offset_nn)
    normaliser_L = jnp.sum(jnp.exp(-inverse_two_var_L[:, None] * jnp.square(all_offsets)), axis=-1)
    gaussian_Lnn = weights_Lnn / normaliser_L[:, None, None]
    identity_nn = jnp.eye(size, dtype=jnp.float32)
    return jnp.where(blurs[:, None, None], gaussian_Lnn, identity_nn)


def composite_blurred_layers(
    image_HWC: jnp.ndarray, layer_index_HW: jnp.ndarray, sigma_px_SL: jnp.ndarray, num_layers: int
) -> jnp.ndarray:
    """Renders S defocused images by blurring each layer with its own Gaussian and compositing.

    Args:
      image_HWC: (H, W, C) all-in-focus image, float.
      layer_index_HW: (H, W) int layer of each pixel, larger = nearer (see `assign_inverse_depth_layers`).
      sigma_px_SL: (S, L) Gaussian standard deviation in pixels of layer l in image s (0 = sharp).
      num_layers: L (static).

    Returns:
      (S, H, W, C) float32. Per image s, with coverage M_l (one-hot of the layer index), blurred colour
      Ĉ_l = G_l * (M_l · I) and blurred alpha α̂_l = G_l * M_l, the over operator from far (l = 0) to
      near gives out = Σ_l Ĉ_l T_l and A = Σ_l α̂_l T_l with T_l = Π_{m>l} (1 − α̂_m); the result is
      out / A. A flat-colour image therefore stays exactly flat, and a blurred near layer covers the
      sharp far layer next to it in proportion to its blurred alpha.
    """
    height, width, channels = image_HWC.shape
    image_HWC = jnp.asarray(image_HWC, jnp.float32)
    coverage_LHW = (layer_index_HW[None] == jnp.arange(num_layers)[:, None, None]).astype(jnp.float32)
    # Premultiplied colour and alpha blur together: one batched matmul per axis.
    layers_LHWK = jnp.concatenate([coverage_LHW[..., None] * image_HWC[None], coverage_LHW[..., None]], -1)

    def render_one(sigma_px_L):
        rows_LHH = gaussian_blur_matrices(sigma_px_L, height)
        cols_LWW = gaussian_blur_matrices(sigma_px_L, width)
        blurred_LHWK = jnp.einsum("lhi,liwk->lhwk", rows_LHH, layers_LHWK)
        blurred_LHWK = jnp.einsum("lwj,lhjk->lhwk", cols_LWW, blurred_LHWK)
        colour_LHWC, alpha_LHW = blurred_LHWK[..., :channels], blurred_LHWK[..., channels]
        # T_l = prod over nearer layers m > l of (1 - alpha_m): a reverse exclusive cumulative product.
        one_minus_LHW = 1.0 - alpha_LHW
        nearer_product_LHW = jnp.flip(jnp.cumprod(jnp.flip(one_minus_LHW, 0), axis=0), 0)
        transmittance_LHW = jnp.concatenate([nearer_product_LHW[1:], jnp.ones_like(alpha_LHW[:1])], 0)
        colour_HWC = jnp.sum(colour_LHWC * transmittance_LHW[..., None], axis=0)
        accumulated_HW = jnp.sum(alpha_LHW * transmittance_LHW, axis=0)
        covered_HW = accumulated_HW > _MIN_ACCUMULATED_ALPHA
        normalised_HWC = colour_HWC / jnp.where(covered_HW, accumulated_HW, 1.0)[..., None]
        return jnp.where(covered_HW[..., None], normalised_HWC, image_HWC)

    # lax.map, not vmap: one image's (L, H, W, C+1) blurred layers at a time keeps memory at O(L·H·W·C).
    return jax.lax.map(render_one, jnp.asarray(sigma_px_SL, jnp.float32))
