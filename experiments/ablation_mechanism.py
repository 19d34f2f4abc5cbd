"""What the constraints do inside the network, shown on hard scenes of the engine's test split (--phase=mechanism).

Spatial constraint, for the full model (variant dualfocus, the sweep's first seed): on one test stack each of the
families texture_edge, similar_texture_edge and occluders (`datasets/focal_engine`'s stack of that family and the
first camera family, PICTURE_SLICES slices), one picture per scene, mechanism_<family>.png. Its top row: the
all-in-focus image, the ground truth, the prediction, the ground truth's unit-free depth gradient on the solver
grid, the predicted one (Σ_n q_n θ(z*_n)), and per focal plane the share of the gradient fields' energy the
Poisson solver keeps (1 − ‖P z* − Γ‖² / ‖Γ‖², the integrable part) beside the plane's mean in-focus weight.
One row per focal plane n below: the slice, the in-focus weight q_n of the ground truth (the weights of L_sv),
the network's focus probability p_n, the gradient fields' magnitude |Γ_n| (RMS over the C2 pairs), the integrated
surface z*_n of the channel that tracks depth best (largest |correlation| of Σ_n q_n z*_n with the ground truth,
sign turned to positive) and |θ(z*_n)|, the depth gradient the surfaces give. The spatial branch works at
1/solver_stride of the input (8 × 8 cells for a 128² stack at stride 16).

Focal constraint, DualFocus against no_focal (the same network trained without L_fv): how unimodal the raw focus
probabilities are (before the unimodal projection DualFocus applies at inference) on the hard families' test
stacks, per slice count: the share of scored pixels whose curve over the slices has one peak (non-decreasing up
to its maximum, non-increasing after), the share within 0.01 of a unimodal curve (max |p − Π(p)|, Π the exact
unimodal projection), and the mean probability mass the projection moves (½‖p − Π(p)‖₁); and focus_curves.png,
p over the focus positions at four pixels (two at depth edges, two on fine texture, drawn with a fixed seed) of a
similar_texture_edge stack. Writes mechanism.md beside the pictures.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from datasets.focal_engine.focal_engine_dataset_builder import IMAGE_SIZE, engine_test_stack
from dualfocus_jax.engine import CAMERA_FAMILIES, HARD_FAMILIES, SCENE_FAMILIES
from dualfocus_jax.evaluation.regions import region_masks
from dualfocus_jax.model import DualFocusConfig, DualFocusNet, in_focus_weights
from dualfocus_jax.model.config import PAD_MULTIPLE
from dualfocus_jax.model.losses import downsample_depth_with_mask, unit_free_depth_gradients
from dualfocus_jax.model.padding import pad_spatial, padding_to_multiple
from dualfocus_jax.model.spatial_branch import SpatialBranch, integrated_surfaces
from dualfocus_jax.variational import integrability_residual, project_unimodal
from dualfocus_jax.variational.unimodal import is_unimodal
from experiments.ablation_runs import Run, run_dir, run_finished
from experiments.evaluate_generalisation import Scene, load_method, scored_mask

PICTURE_FAMILIES = ("texture_edge", "similar_texture_edge", "occluders")
CURVES_FAMILY = "similar_texture_edge"
COMPARED = ("dualfocus", "no_focal")
NEAR_UNIMODAL = 0.01  # max |p − Π(p)| under which a curve counts as unimodal within tolerance


@dataclasses.dataclass(frozen=True)
class MechanismSizes:
    """size: (H, W) of the stacks; picture_slices: slices of the mechanism pictures; curve_slices: the slice
    counts of the unimodality table; cameras: camera families per hard family in it; families: the hard families
    in it."""

    size: tuple[int, int] = IMAGE_SIZE
    picture_slices: int = 5
    curve_slices: tuple[int, ...] = (5, 7, 10, 16)
    cameras: int = len(CAMERA_FAMILIES)
    families: tuple[str, ...] = HARD_FAMILIES


QUICK_MECHANISM = MechanismSizes(size=(32, 32), picture_slices=3, curve_slices=(5,), cameras=1,
                                 families=(CURVES_FAMILY,))


def test_index(family: str, camera: int = 0) -> int:
    """The index of the engine test stack of a scene family and camera family (stack i has camera family
    i % 3 and scene family (i // 3) % 9: datasets/focal_engine)."""
    return len(CAMERA_FAMILIES) * SCENE_FAMILIES.index(family) + camera


def test_scene(num_slices: int, family: str, size=IMAGE_SIZE, camera: int = 0) -> Scene:
    """One stack of the engine's test split (the same as the prepared split's at 128²), as a Scene."""
    example_id, record = engine_test_stack(num_slices, test_index(family, camera), tuple(size))
    return Scene("engine", example_id, np.asarray(record["stack"], np.float32) / 255.0,
                 np.asarray(record["focus_positions"], np.float64), np.asarray(record["depth"], np.float32),
                 np.asarray(record["valid"], bool), np.asarray(record["aif"]),
                 {"slices": int(num_slices), "scene_family": family})


@functools.cache
def _forward(config: DualFocusConfig):
    """jit of (params, stack (1, S, H, W, 3), focus (1, S)) → (raw focus probabilities (1, S, H, W) (train=True:
    no unimodal projection), the spatial branch's outputs or None)."""
    model = DualFocusNet(config)

    def run(params, stack, focus):
        outputs, state = model.apply(params, stack, focus, train=True, mutable=["intermediates"],
                                     capture_intermediates=lambda module, _: isinstance(module, SpatialBranch))
        captured = state.get("intermediates", {}).get("spatial_branch", {}).get("__call__")
        return outputs.prob, (captured[0] if captured else None)

    return jax.jit(run)


def integrable_fraction(fields_SHWK2: np.ndarray, config: DualFocusConfig) -> np.ndarray:
    """Per plane, 1 − ‖P z* − Γ‖² / ‖Γ‖² summed over the C2 field pairs: the share of the fields' energy the
    least-squares integration keeps (fields (S, h, w, 2·C2), x fields first); (S,)."""
    k = fields_SHWK2.shape[-1] // 2
    gx, gy = fields_SHWK2[..., :k], fields_SHWK2[..., k:]
    z = np.asarray(integrated_surfaces(jnp.asarray(gx)[None], jnp.asarray(gy)[None], solver=config.solver,
                                       cg_iters=config.cg_iters))[0]
    gx, gy, z = (np.moveaxis(a, -1, 1) for a in (gx, gy, z))  # (S, K, h, w)
    residual = np.asarray(integrability_residual(jnp.asarray(z), jnp.asarray(gx), jnp.asarray(gy))).sum(axis=1)
    energy = (gx[..., :, :-1] ** 2).sum(axis=(1, 2, 3)) + (gy[..., :-1, :] ** 2).sum(axis=(1, 2, 3))
    return 1.0 - residual / np.maximum(energy, 1e-12)


def solver_grid_truth(scene: Scene, stride: int, tau_rel: float):
    """(depth, valid, unit-free gradient (h, w, 2), in-focus weights q (S, h, w)) of the ground truth on the
    spatial branch's grid, as L_sv computes them."""
    h, w = scene.depth.shape
    pads = padding_to_multiple(h, w, PAD_MULTIPLE)
    valid = jnp.asarray(scene.valid)[None]
    depth = pad_spatial(jnp.where(valid, jnp.asarray(scene.depth)[None], 0.0), pads, spatial_axes=(1, 2),
                        mode="constant")
    valid = pad_spatial(valid, pads, spatial_axes=(1, 2), mode="constant", constant=False)
    depth_low, valid_low = downsample_depth_with_mask(depth, valid, stride)
    focus = jnp.asarray(scene.focus, jnp.float32)[None]
    gradient, _ = unit_free_depth_gradients(depth_low, valid_low, focus.max(axis=1) - focus.min(axis=1))
    weights = in_focus_weights(depth_low, focus, tau_rel)
    return (np.asarray(depth_low[0]), np.asarray(valid_low[0]), np.asarray(gradient[0]), np.asarray(weights[0]))


def mechanism_outputs(params, config: DualFocusConfig, scene: Scene) -> dict:
    """The forward's raw and inference probabilities, depth, and (with the spatial branch) its fields,
    surfaces, θ and the ground truth on its grid."""
    prob_raw, spatial = _forward(config)(params, jnp.asarray(scene.stack)[None],
                                         jnp.asarray(scene.focus, jnp.float32)[None])
    prob_raw = np.asarray(prob_raw[0], np.float64)
    prob = np.asarray(project_unimodal(jnp.asarray(prob_raw), axis=0)) if config.project_unimodal_at_inference \
        else prob_raw
    out = {"prob_raw": prob_raw, "prob": prob,
           "depth": np.tensordot(scene.focus, prob, axes=(0, 0)).astype(np.float32)}
    if spatial is not None:
        fields = np.asarray(spatial["gradient_fields"][0], np.float64)
        depth_low, valid_low, gradient, weights = solver_grid_truth(scene, config.solver_stride, config.tau_rel)
        out.update(fields=fields, surfaces=np.asarray(spatial["surfaces"][0]),
                   theta=np.asarray(spatial["surface_gradients"][0]), integrable=integrable_fraction(fields, config),
                   depth_low=depth_low, valid_low=valid_low, gradient_low=gradient, q=weights)
    return out


def depth_channel(surfaces_SHWK: np.ndarray, q_SHW: np.ndarray, depth_HW: np.ndarray, valid_HW: np.ndarray):
    """(channel, sign): the surface channel whose in-focus-weighted mean Σ_n q_n z*_n correlates most (in
    absolute value) with the ground truth over the valid cells, and the sign that makes the correlation positive."""
    combined = np.einsum("shw,shwk->hwk", q_SHW, surfaces_SHWK)[valid_HW]
    target = depth_HW[valid_HW]
    best, sign, score = 0, 1.0, -1.0
    for channel in range(combined.shape[-1]):
        values = combined[:, channel]
        if values.std() == 0 or target.std() == 0:
            continue
        correlation = float(np.corrcoef(values, target)[0, 1])
        if abs(correlation) > score:
            best, sign, score = channel, (1.0 if correlation >= 0 else -1.0), abs(correlation)
    return best, sign


def _show(figure, axes, image, title, **options):
    axis = axes
    shown = axis.imshow(image, interpolation="nearest", **options)
    axis.set_title(title, fontsize=7)
    axis.axis("off")
    if image.ndim == 2:
        bar = figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=5)


def mechanism_picture(path: str, scene: Scene, out: dict, title: str) -> str:
    """The picture of the module docstring for one scene (`out` from mechanism_outputs of a model with the
    spatial branch); returns the path."""
    s = len(scene.focus)
    q, surfaces, theta, fields = out["q"], out["surfaces"], out["theta"], out["fields"]
    k = fields.shape[-1] // 2
    channel, sign = depth_channel(surfaces, q, out["depth_low"], out["valid_low"])
    field_magnitude = np.sqrt((fields[..., :k] ** 2 + fields[..., k:] ** 2).mean(axis=-1))  # (S, h, w)
    theta_magnitude = np.linalg.norm(theta, axis=-1)
    truth_magnitude = np.linalg.norm(out["gradient_low"], axis=-1)
    predicted = np.linalg.norm(np.einsum("shw,shwc->hwc", q, theta), axis=-1)
    surface = sign * surfaces[..., channel]
    low, high = float(scene.focus.min()), float(scene.focus.max())  # depth lives in the focus range
    gradient_max = float(max(np.percentile(truth_magnitude, 99), np.percentile(theta_magnitude, 99), 1e-6))
    field_max = float(np.percentile(field_magnitude, 99)) or 1.0
    surface_max = float(np.percentile(np.abs(surface), 99)) or 1.0
    prob_max = float(max(out["prob_raw"].max(), 1e-6))

    columns = 6
    figure = Figure(figsize=(2.1 * columns, 1.9 * (s + 1) + 0.4), dpi=80)
    FigureCanvasAgg(figure)
    grid = figure.subplots(s + 1, columns, squeeze=False)
    _show(figure, grid[0, 0], np.clip(scene.aif.astype(np.float32) / (255.0 if scene.aif.dtype == np.uint8 else 1.0),
                                      0, 1), "all-in-focus")
    _show(figure, grid[0, 1], scene.depth, "ground truth (m)", cmap="turbo_r", vmin=low, vmax=high)
    _show(figure, grid[0, 2], out["depth"], "DualFocus depth (m)", cmap="turbo_r", vmin=low, vmax=high)
    _show(figure, grid[0, 3], truth_magnitude, "|∇D| / range, truth (solver grid)", cmap="magma", vmin=0,
          vmax=gradient_max)
    _show(figure, grid[0, 4], predicted, "|Σ q_n θ(z*_n)|, predicted", cmap="magma", vmin=0, vmax=gradient_max)
    axis = grid[0, 5]
    planes = np.arange(s)
    valid_low = out["valid_low"]
    axis.plot(planes, out["integrable"], "o-", label="integrable share of |Γ|²", color="tab:blue")
    axis.plot(planes, [q[n][valid_low].mean() if valid_low.any() else np.nan for n in planes], "s--",
              label="mean q_n (truth)", color="tab:orange")
    axis.set_xticks(planes)
    axis.set_xticklabels([f"{f:.2g}" for f in scene.focus], fontsize=5)
    axis.set_xlabel("focus position (m)", fontsize=6)
    axis.set_ylim(0, 1.05)
    axis.tick_params(labelsize=5)
    axis.legend(fontsize=5, loc="lower left")
    axis.set_title("per focal plane", fontsize=7)
    for n in range(s):
        row = grid[n + 1]
        _show(figure, row[0], np.clip(scene.stack[n], 0, 1), f"slice {n + 1}: focus {scene.focus[n]:.3g} m")
        _show(figure, row[1], q[n], "in-focus weight q_n (truth)", cmap="viridis", vmin=0, vmax=1)
        _show(figure, row[2], out["prob_raw"][n], "focus prob. p_n (raw)", cmap="viridis", vmin=0, vmax=prob_max)
        _show(figure, row[3], field_magnitude[n], f"|Γ_n| (integrable {out['integrable'][n]:.2f})", cmap="magma",
              vmin=0, vmax=field_max)
        _show(figure, row[4], surface[n], f"surface z*_n, channel {channel}", cmap="RdBu_r", vmin=-surface_max,
              vmax=surface_max)
        _show(figure, row[5], theta_magnitude[n], "|θ(z*_n)|", cmap="magma", vmin=0, vmax=gradient_max)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


# ---------------------------------------------------------------- unimodality of the focus curves


def unimodality(prob_SHW: np.ndarray, mask_HW: np.ndarray) -> dict[str, float]:
    """Over the masked pixels: share with one peak, share within NEAR_UNIMODAL of a unimodal curve, mean mass
    the unimodal projection moves."""
    curves = np.moveaxis(np.asarray(prob_SHW, np.float32), 0, -1)[np.asarray(mask_HW, bool)]  # (N, S)
    if not len(curves):
        return {"unimodal": float("nan"), "near_unimodal": float("nan"), "moved_mass": float("nan"), "pixels": 0}
    projected = np.asarray(project_unimodal(jnp.asarray(curves), axis=-1))
    distance = np.abs(curves - projected)
    return {"unimodal": float(np.mean(np.asarray(is_unimodal(jnp.asarray(curves))))),
            "near_unimodal": float(np.mean(distance.max(axis=-1) <= NEAR_UNIMODAL)),
            "moved_mass": float(np.mean(0.5 * distance.sum(axis=-1))), "pixels": int(len(curves))}


def unimodality_table(models: dict[str, tuple], sizes: MechanismSizes) -> dict[str, dict[int, dict[str, float]]]:
    """variant → slice count → unimodality over the scored pixels of the hard families' test stacks (pooled)."""
    table: dict[str, dict[int, dict[str, float]]] = {name: {} for name in models}
    for count in sizes.curve_slices:
        scenes = [test_scene(count, family, sizes.size, camera) for family in sizes.families
                  for camera in range(sizes.cameras)]
        for name, (params, config) in models.items():
            probs, masks = [], []
            for scene in scenes:
                probs.append(mechanism_outputs(params, config, scene)["prob_raw"].reshape(count, -1))
                masks.append(scored_mask(scene.depth, scene.valid, scene.focus).reshape(-1))
            table[name][count] = unimodality(np.concatenate(probs, axis=1), np.concatenate(masks))
    return table


def example_pixels(scene: Scene, rng_seed: int = 0) -> list[tuple[str, int, int]]:
    """Two depth-edge and two fine-texture pixels (scored pixels, named "scored", where a region has none),
    drawn with a fixed seed: (region, row, column)."""
    scored = scored_mask(scene.depth, scene.valid, scene.focus)
    masks = region_masks(scene.depth, scored, scene.aif, float(scene.focus.max() - scene.focus.min()))
    rng = np.random.default_rng(rng_seed)
    chosen = []
    for region in ("depth_edges", "fine_texture"):
        name, mask = (region, masks[region]) if masks[region].any() else ("scored", scored)
        if not mask.any():
            name, mask = "any", np.ones_like(scored)
        where = np.argwhere(mask)
        for index in rng.choice(len(where), size=min(2, len(where)), replace=False):
            chosen.append((name, int(where[index][0]), int(where[index][1])))
    return chosen


def focus_curves_picture(path: str, scene: Scene, outputs: dict[str, dict], title: str) -> str:
    """The stack's all-in-focus image with the example pixels, then p over the focus positions at each of
    them, per model (raw; DualFocus also after its inference-time projection), the ground truth dashed."""
    pixels = example_pixels(scene)
    figure = Figure(figsize=(2.6 * (len(pixels) + 1), 2.6), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(pixels) + 1, squeeze=False)[0]
    aif = np.clip(scene.aif.astype(np.float32) / (255.0 if scene.aif.dtype == np.uint8 else 1.0), 0, 1)
    axes[0].imshow(aif, interpolation="nearest")
    axes[0].axis("off")
    axes[0].set_title(scene.example_id, fontsize=6)
    colours = {"dualfocus": "tab:blue", "no_focal": "tab:red"}
    for number, ((region, row, column), axis) in enumerate(zip(pixels, axes[1:]), start=1):
        axes[0].plot(column, row, "o", markersize=7, markerfacecolor="none", markeredgecolor="white")
        axes[0].annotate(str(number), (column, row), color="white", fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
        for name, out in outputs.items():
            colour = colours.get(name, "tab:gray")
            axis.plot(scene.focus, out["prob_raw"][:, row, column], "o-", color=colour, markersize=3,
                      label=f"{name} (raw)")
            if not np.array_equal(out["prob"], out["prob_raw"]):
                axis.plot(scene.focus, out["prob"][:, row, column], ":", color=colour, label=f"{name} (projected)")
        axis.axvline(float(scene.depth[row, column]), color="black", linestyle="--", linewidth=1, label="truth")
        axis.set_title(f"{number}: {region.replace('_', ' ')} ({row}, {column})", fontsize=7)
        axis.set_xlabel("focus position (m)", fontsize=6)
        axis.xaxis.set_major_locator(MaxNLocator(4))
        axis.set_ylabel("p", fontsize=6)
        axis.tick_params(labelsize=5)
        if number == 1:
            axis.legend(fontsize=5)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


# ---------------------------------------------------------------- the phase


def _plane_table(scene: Scene, out: dict) -> list[str]:
    q, valid = out["q"], out["valid_low"]
    lines = ["| plane | focus (m) | mean q_n (truth) | integrable share of |Γ_n|² |", "|---|---|---|---|"]
    for n, focus in enumerate(scene.focus):
        weight = q[n][valid].mean() if valid.any() else float("nan")
        lines.append(f"| {n + 1} | {focus:.3g} | {weight:.2f} | {out['integrable'][n]:.3f} |")
    return lines


def mechanism_markdown(pictures: list[tuple[str, Scene, dict]], table: dict, sizes: MechanismSizes, seed: int,
                       curves_path: str | None, sources: dict[str, str]) -> list[str]:
    text = ["# Mechanism: what the spatial and focal constraints do", "",
            "Models: " + "; ".join(f"{name} seed {seed} (`{source}`)" for name, source in sources.items()) + ". "
            "See experiments/ablation_mechanism.py for every quantity.", "",
            "## Spatial branch of the full model on hard scenes", "",
            "Per focal plane: the mean in-focus weight q_n of the ground truth over the solver grid, and the share "
            "of the predicted gradient fields' energy that is integrable (kept by the Poisson solver). The claim "
            "of the design: planes in focus give consistent, integrable fields; planes out of focus give fields the "
            "projection mostly removes.", ""]
    for path, scene, out in pictures:
        text += [f"### {scene.groups['scene_family']}: {scene.example_id}", "", *_plane_table(scene, out), "",
                 f"![{os.path.basename(path)}]({os.path.basename(path)})", ""]
    counts = sorted({c for rows in table.values() for c in rows})
    stacks = len(sizes.families) * sizes.cameras
    text += ["## Unimodality of the focus curves with and without L_fv", "",
             f"Raw focus probabilities (before DualFocus's inference-time projection) over the scored pixels of "
             f"{stacks} test stacks per slice count ({', '.join(sizes.families)} × {sizes.cameras} camera "
             f"families). Cells: one peak / within {NEAR_UNIMODAL:g} of unimodal / mean mass moved by the "
             "projection.", "",
             "| model | " + " | ".join(f"{c} slices" for c in counts) + " |", "|---" * (len(counts) + 1) + "|"]
    for name, rows in table.items():
        cells = [(f"{rows[c]['unimodal']:.1%} / {rows[c]['near_unimodal']:.1%} / {rows[c]['moved_mass']:.4f}"
                  if c in rows else "–") for c in counts]
        text.append(f"| {name} | " + " | ".join(cells) + " |")
    if curves_path:
        text += ["", f"![{os.path.basename(curves_path)}]({os.path.basename(curves_path)})"]
    return text


def write_mechanism(args, sizes: MechanismSizes) -> list[str]:
    """The phase: loads the first seed's dualfocus and no_focal runs, writes the pictures and mechanism.md into
    args.results; returns the paths written."""
    seed = args.seeds[0]
    runs = {name: Run(name, seed, args.steps, run_dir(args.workdir, name, seed)) for name in COMPARED}
    missing = [name for name, run in runs.items() if not run_finished(run)]
    if "dualfocus" in missing:
        raise SystemExit(f"the mechanism needs the finished dualfocus run of seed {seed} "
                         f"({runs['dualfocus'].directory}); train it first (--phase=train).")
    for name in missing:
        print(f"  {name} seed {seed}: not trained to step {args.steps}, left out of the mechanism", flush=True)
    export_root = tempfile.mkdtemp(prefix="ablation_mechanism_")
    try:
        methods = {name: load_method(name, runs[name].directory, export_root=export_root,
                                     workdir_config="configs/engine_small.py", command=args.command)
                   for name in COMPARED if name not in missing}
    finally:
        shutil.rmtree(export_root, ignore_errors=True)
    models = {name: (method.params, method.config) for name, method in methods.items()}
    os.makedirs(args.results, exist_ok=True)
    written, pictures = [], []
    params, config = models["dualfocus"]
    for family in PICTURE_FAMILIES:
        scene = test_scene(sizes.picture_slices, family, sizes.size)
        out = mechanism_outputs(params, config, scene)
        path = os.path.join(args.results, f"mechanism_{family}.png")
        mechanism_picture(path, scene, out, f"DualFocus (seed {seed}) on {scene.example_id}: the spatial branch "
                          f"per focal plane (solver grid 1/{config.solver_stride})")
        pictures.append((path, scene, out))
        written.append(path)
        print(f"  wrote {path}", flush=True)
    print("  unimodality of the raw focus curves", flush=True)
    table = unimodality_table(models, sizes)
    count = max(sizes.curve_slices)
    scene = test_scene(count, CURVES_FAMILY, sizes.size)
    curves_path = os.path.join(args.results, "focus_curves.png")
    focus_curves_picture(curves_path, scene, {name: mechanism_outputs(p, c, scene) for name, (p, c) in models.items()},
                         f"Focus probabilities at four pixels of {scene.example_id} (seed {seed})")
    written.append(curves_path)
    text = mechanism_markdown(pictures, table, sizes, seed, curves_path,
                              {name: method.source for name, method in methods.items()})
    path = os.path.join(args.results, "mechanism.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    written.append(path)
    print("\n".join(text[-(len(table) + 4):]), flush=True)
    print(f"wrote {path}", flush=True)
    return written
