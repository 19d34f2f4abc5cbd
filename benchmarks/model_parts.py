"""Where the forward pass spends its time: DualFocusNet's parts, each jitted and timed alone (`bench_model --parts`).

The parts are the model's own modules and functions, chained as `DualFocusNet.__call__` chains them, each fed
the previous part's real output: input (sort, pad, normalise) → encoder (shared 2D ResNet and pyramid pooling)
→ focal volumes → spatial branch (fields, the Poisson solve per focal plane) → 3D decoder → head (upsampling
of the costs, softmax, expectation) → unimodal projection → outputs (uncertainty, all-in-focus image).
`chained_outputs` returns the depth the chain computes, so a test checks it equals the whole model's (the
chain cannot drift from the model unnoticed). Timing each part alone leaves out what XLA gains by fusing
across parts, so the parts add up to a little more than the whole forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.peak import xla_flops
from dualfocus_jax.focus_statistics import depth_uncertainty, expected_depth
from dualfocus_jax.model import initial_params, model_config
from dualfocus_jax.model.config import PAD_MULTIPLE, DualFocusConfig
from dualfocus_jax.model.decoder import FocalDecoder
from dualfocus_jax.model.dualfocus import sorted_by_focus
from dualfocus_jax.model.encoder import FocalStackEncoder
from dualfocus_jax.model.focal_volume import enhanced_focal_volume
from dualfocus_jax.model.padding import crop_spatial, pad_spatial, padding_to_multiple
from dualfocus_jax.model.resampling import resize_bilinear_hw
from dualfocus_jax.model.resnet import trunk_input_from_images
from dualfocus_jax.model.spatial_branch import SpatialBranch
from dualfocus_jax.variational import project_unimodal

Part = tuple[str, Callable, tuple]  # (name, function, its arguments)


def _parts(config: DualFocusConfig, params: dict, stack_BSHWC, focus_BS, run: Callable) -> jax.Array:
    """Runs the chain; `run(name, function, *args)` runs (and may time) each part and returns its output.
    Returns the depth (B, H, W)."""
    cfg, compute = config, jnp.dtype(config.dtype)
    b, s, h, w, _ = stack_BSHWC.shape
    pads = padding_to_multiple(h, w, PAD_MULTIPLE)

    def prepare(stack, focus):
        stack, focus = sorted_by_focus(stack.astype(jnp.float32), focus.astype(jnp.float32))
        padded = pad_spatial(stack, pads, spatial_axes=(2, 3), mode=cfg.pad_mode)
        images = trunk_input_from_images(padded.reshape(b * s, *padded.shape[2:])).astype(compute)
        return stack, focus, images

    stack, focus, images = run("input", prepare, stack_BSHWC, focus_BS)
    hp, wp = images.shape[1], images.shape[2]
    encoder = FocalStackEncoder(cfg.stem_width, cfg.encoder_widths, cfg.encoder_blocks, cfg.volume_channels,
                                cfg.pyramid_pool_grids, cfg.norm_groups, compute)
    features = run("encoder", lambda p, x: encoder.apply({"params": p}, x, s), params["encoder"], images)
    volumes = run("focal volumes", lambda fs: [enhanced_focal_volume(f.reshape(b, s, *f.shape[1:]), cfg.volume_mode)
                                               for f in fs], features)
    if cfg.use_spatial:
        level = cfg.surface_level
        branch = SpatialBranch(cfg)
        spatial = run("spatial branch", lambda p, fine, coarse: branch.apply({"params": p}, fine, coarse),
                      params["spatial_branch"], volumes[0], volumes[level])
        volumes[level] = jnp.concatenate([volumes[level], spatial["surfaces"].astype(compute)], axis=-1)
    decoder = FocalDecoder(cfg.decoder_channels, cfg.norm_groups, cfg.conv3d_impl, compute)
    costs = run("3D decoder", lambda p, vs: decoder.apply({"params": p}, tuple(vs)), params["decoder"], volumes)

    def head(costs):
        logits = [crop_spatial(resize_bilinear_hw(c, hp, wp, channel_last=False), pads, spatial_axes=(2, 3))
                  for c in reversed(costs)]
        prob_levels = [jax.nn.softmax(x, axis=1) for x in logits]
        return prob_levels[0], [expected_depth(p, focus, cfg.expectation) for p in prob_levels]

    prob, _ = run("head", head, costs)
    if cfg.project_unimodal_at_inference:
        prob = run("unimodal projection", lambda p: project_unimodal(p, axis=1), prob)

    def outputs(prob, focus, stack):
        depth = expected_depth(prob, focus, cfg.expectation)
        uncertainty = depth_uncertainty(prob, focus, depth, cfg.expectation)
        return depth, uncertainty, jnp.einsum("bshw,bshwc->bhwc", prob, stack)

    depth, _, _ = run("outputs", outputs, prob, focus, stack)
    return depth


def chained_outputs(config: DualFocusConfig, params: dict, stack_BSHWC, focus_BS) -> tuple[jax.Array, list[str]]:
    """(the depth of the part chain, the names of its parts in order), run without timing and jit-able (for the
    test against `DualFocusNet`)."""
    names = []

    def run(name, function, *args):
        names.append(name)
        return function(*args)

    return _parts(config, params["params"], stack_BSHWC, focus_BS, run), names


def benchmark_case(size: str, variant: str, slices: int, height: int, width: int, dtype: str = "float32",
                   cost_upsampling: str = "bilinear"):
    """(config, parameters, stack (1, S, H, W, 3), focus (1, S)) of one benchmark case: seed-0 parameters and a
    seeded random stack, the same for the whole forward (bench_model) and its parts."""
    config = model_config(size, variant, dtype=dtype, cost_upsampling=cost_upsampling)
    params = initial_params(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    stack = jnp.asarray(rng.random((1, slices, height, width, 3), dtype=np.float32))
    focus = jnp.asarray(np.linspace(0.1, 1.5, slices, dtype=np.float32)[None])
    return config, params, stack, focus


def time_parts(size: str, variant: str, slices: int, height: int, width: int, repeats: int,
               dtype: str = "float32", cost_upsampling: str = "bilinear") -> list[dict]:
    """[{part, forward_s, flops}] of each part at B=1: median of `repeats` calls of its compiled program after a
    warm-up call."""
    config, params, stack, focus = benchmark_case(size, variant, slices, height, width, dtype, cost_upsampling)
    rows = []

    def run(name, function, *args):
        compiled = jax.jit(function).lower(*args).compile()
        output = jax.block_until_ready(compiled(*args))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - start)
        rows.append(dict(part=name, forward_s=float(np.median(times)), flops=xla_flops(compiled)))
        return output

    _parts(config, params["params"], stack, focus, run)
    return rows
