"""Where a model's error on the rendered motorcycle comes from: per number of slices in which a surface renders
sharp, and near depth edges or not.

    python -m experiments.motorcycle_error_breakdown                                   # the shipped model
    python -m experiments.motorcycle_error_breakdown --checkpoint runs/export_x --checkpoint classical
    python -m experiments.motorcycle_error_breakdown --nodefocus_refinement      # the network's depth alone

The motorcycle of `evaluate_generalisation` (`embedded_scenes.render_motorcycle_stack`, downscale 2, the
NYUv2 camera, focus evenly in metres over the valid depth range) is rendered by the layered protocol
renderer, which renders a surface sharp in every slice where its circle of confusion is at most
2 × IN_FOCUS_RADIUS_PX = 2 px across. Surfaces sharp in several slices can only be placed by the blur the other
slices show, so the table groups the scored pixels by that count. "depth edges" are the pixels of
`evaluation.regions.depth_edge_mask`. Per group: share of the scored pixels, RMSE (m), AbsRel, and share of the
squared error. Prints one Markdown table per slice count and method (about a minute per network on 2 cores).
"""

from __future__ import annotations

import numpy as np
from absl import flags

from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.embedded_scenes import render_motorcycle_stack
from dualfocus_jax.evaluation.regions import depth_edge_mask
from dualfocus_jax.inference import DEFAULT_CHECKPOINT, load_exported_checkpoint, predict_depth
from dualfocus_jax.rendering.thin_lens import IN_FOCUS_RADIUS_PX, NYUV2_CAMERA, circle_of_confusion_px

CLASSICAL = "classical"
FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_multi_string("checkpoint", [DEFAULT_CHECKPOINT],
                          f"exported checkpoint folder(s), or {CLASSICAL!r} for the refined classical baseline",
                          flag_values=FLAGS)
flags.DEFINE_multi_integer("slices", [5, 10], "slice counts of the rendered stacks", flag_values=FLAGS)
flags.DEFINE_bool("defocus_refinement", True, "networks' depth refined by the slices' blur, as predict does "
                  "(--nodefocus_refinement: the network alone)", flag_values=FLAGS)
flags.DEFINE_integer("downscale", 2, "downscale of the motorcycle scene (2 as in evaluate_generalisation)",
                     flag_values=FLAGS)


def sharp_slice_count(depth_HW: np.ndarray, focus_S: np.ndarray) -> np.ndarray:
    """(H, W) int: in how many slices the protocol renderer draws each pixel's surface sharp."""
    radius = np.stack([0.5 * np.asarray(circle_of_confusion_px(depth_HW, float(f), NYUV2_CAMERA)) for f in focus_S])
    return np.sum(radius <= IN_FOCUS_RADIUS_PX, axis=0)


def breakdown_rows(pred_HW, depth_HW, scored_HW,
                   groups: dict[str, np.ndarray]) -> list[tuple[str, float, float, float, float]]:
    """(group, share of scored pixels, RMSE, AbsRel, share of squared error) per non-empty group, then "all"."""
    squared = (pred_HW - depth_HW) ** 2
    relative = np.abs(pred_HW - depth_HW) / np.where(scored_HW, depth_HW, 1.0)
    total, count = float(squared[scored_HW].sum()), int(scored_HW.sum())
    rows = []
    for name, mask in [*groups.items(), ("all", scored_HW)]:
        pixels = scored_HW & mask
        if pixels.any():
            rows.append((name, pixels.sum() / count, float(np.sqrt(squared[pixels].mean())),
                         float(relative[pixels].mean()), float(squared[pixels].sum()) / total))
    return rows


def markdown(rows, title: str) -> str:
    lines = [f"### {title}", "", "| pixels | share | RMSE (m) | AbsRel | share of squared error |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {share:.2f} | {rmse:.3f} | {abs_rel:.4f} | {error_share:.2f} |"
              for name, share, rmse, abs_rel, error_share in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m experiments.motorcycle_error_breakdown", doc=__doc__)
    methods = [(spec, None if spec == CLASSICAL else load_exported_checkpoint(spec)) for spec in FLAGS.checkpoint]
    for count in FLAGS.slices:
        rendered = render_motorcycle_stack(count, downscale=FLAGS.downscale)
        depth, scored = rendered.depth_m, rendered.scored
        sharp = sharp_slice_count(np.where(rendered.valid, depth, rendered.focus_m[0]), rendered.focus_m)
        edges = depth_edge_mask(depth, rendered.valid, float(rendered.focus_m[-1] - rendered.focus_m[0]))
        groups = {f"sharp in {k} of {count} slices": sharp == k for k in range(count + 1)}
        groups.update({"depth edges": edges, "away from depth edges": ~edges})
        for spec, loaded in methods:
            if loaded is None:
                pred = predict_depth(rendered.stack, rendered.focus_m, method="classical").depth_HW
            else:
                params, config = loaded
                pred = predict_depth(rendered.stack, rendered.focus_m, method="network", params=params,
                                     config=config, defocus_refinement=FLAGS.defocus_refinement).depth_HW
            label = spec if loaded is None or not FLAGS.defocus_refinement else f"{spec} + defocus refinement"
            print(markdown(breakdown_rows(np.asarray(pred, np.float64), depth, scored, groups),
                           f"{label}, {count} slices"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
