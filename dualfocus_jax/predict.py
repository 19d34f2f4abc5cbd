"""Depth from your own focal stack.

    python -m dualfocus_jax.predict --stack photos/ --out out/
    python -m dualfocus_jax.predict --stack ../shared/data/real_focal_stacks/mobile_depth_balls --out out/balls \
        --focus_distances ../shared/data/real_focal_stacks/mobile_depth_balls/focus_distances_as_published.txt

Writes depth.npy / uncertainty.npy (float32 H×W, in the unit of the focus distances), depth.png, aif.png,
summary.png and with --ply a coloured point cloud points.ply. The logic lives in `dualfocus_jax.inference`.
"""

from __future__ import annotations

import argparse
import sys

from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dualfocus_jax.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="folder of the slices (jpg/png/tif), one per focus setting")
    parser.add_argument("--out", required=True, help="folder for the outputs (created)")
    parser.add_argument("--focus_distances", default=None,
                        help="comma list (one per image, natural file-name order) or a text file with one value per "
                             "line; default: focus_distances.txt in --stack, else decimals in the file names")
    parser.add_argument("--unit", default="m", help="name of the focus-distance unit, for labels (default: m)")
    parser.add_argument("--checkpoint", default=None,
                        help="exported checkpoint folder (default: dualfocus_jax/pretrained/small_synthetic)")
    parser.add_argument("--method", default="network", choices=("network", "classical"),
                        help="network (the DualFocus checkpoint) or classical (focus measure + refinement)")
    parser.add_argument("--max_size", type=int, default=640, help="longer image side in pixels (default: 640)")
    parser.add_argument("--align", dest="align", action="store_true", default=True,
                        help="register the slices (scale + shift) before predicting (default)")
    parser.add_argument("--noalign", dest="align", action="store_false", help="use the slices as they are")
    parser.add_argument("--ply", action="store_true", help="also write a coloured point cloud points.ply")
    parser.add_argument("--fov_deg", type=float, default=DEFAULT_FOV_DEG,
                        help=f"horizontal field of view for --ply, degrees (default: {DEFAULT_FOV_DEG:g})")
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    from dualfocus_jax.inference.pipeline import run_prediction

    try:
        run_prediction(args.stack, args.out, focus_distances=args.focus_distances, checkpoint=args.checkpoint,
                       max_size=args.max_size, align=args.align, method=args.method, ply=args.ply,
                       fov_deg=args.fov_deg, unit=args.unit)
    except ValueError as error:  # FocalStackError and CheckpointError are ValueErrors with a full message
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
