"""Depth from your own focal stack.

    dualfocus-predict --stack photos/ --out out/                    # focus distances in metres (any source)
    dualfocus-predict --stack lightfield/ --out out/ --focus_unit disparity --focus_distances -2.5,-1.25,0,1.25,2.5
    dualfocus-predict --stack ../shared/data/real_focal_stacks/mobile_depth_balls --out out/balls \\
        --focus_order far_to_near                                   # only the order is known: relative depth

(`python -m dualfocus_jax.predict` is the same command.) Focus values come from --focus_distances, else a
focus_distances.txt in the folder, else a decimal number in each file name, else the photos' EXIF focus
distance; --focus_order near_to_far|far_to_near serves a stack with none. Writes, at the photos' pixel grid,
depth and uncertainty as .npy, float32 .exr and .tif and 16-bit .png (scale in metadata.json), aif.png, the
pictures depth.png and summary.png, points.ply with --ply, and metadata.json (units, focus positions, method,
checkpoint, alignment, timings). The logic lives in `dualfocus_jax.inference`.
"""

from __future__ import annotations

import argparse
import sys

from dualfocus_jax.inference.focus_units import FOCUS_ORDERS, FOCUS_UNITS
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualfocus-predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stack", required=True, help="folder of the slices (jpg/png/tif), one per focus setting")
    parser.add_argument("--out", required=True, help="folder for the outputs (created; one run at a time)")
    parser.add_argument("--focus_distances", default=None,
                        help="comma list (one per image, natural file-name order; a unit suffix such as 0.5m, 50cm "
                             "or 2D is allowed) or a text file with one value per line; default: "
                             "focus_distances.txt in --stack, else decimals in the file names, else EXIF")
    parser.add_argument("--focus_unit", default=None, choices=FOCUS_UNITS,
                        help="what the focus values are: distance from the camera (> 0), diopter (1/m, 0 = "
                             "infinity, may be negative) or disparity (any sign, larger = nearer); depth comes out "
                             "in the same unit (default: the values' own unit suffix, else distance)")
    parser.add_argument("--focus_order", default=None, choices=FOCUS_ORDERS,
                        help="for a stack with no focus values: the file-name order of the slices; gives relative "
                             "depth in slice units (0 = nearest slice)")
    parser.add_argument("--unit", default=None,
                        help="name of the unit of the focus values, for labels (default: m for distances, D for "
                             "diopters)")
    parser.add_argument("--checkpoint", default=None,
                        help="exported checkpoint folder (default: the shipped model, dualfocus_jax/pretrained/"
                             "small_synthetic)")
    parser.add_argument("--method", default="network", choices=("network", "classical"),
                        help="network (the DualFocus checkpoint) or classical (focus measure + refinement)")
    parser.add_argument("--max_size", type=int, default=640,
                        help="longer image side of the working resolution in pixels; the outputs are upsampled "
                             "to the photos' own pixel grid")
    parser.add_argument("--full_resolution", action="store_true",
                        help="predict at the photos' full resolution instead (slow, memory-hungry)")
    parser.add_argument("--align", dest="align", action="store_true", default=True,
                        help="register the slices (scale + shift) before predicting")
    parser.add_argument("--noalign", dest="align", action="store_false", help="use the slices as they are")
    parser.add_argument("--ply", action="store_true",
                        help="also write a coloured point cloud points.ply (distances and diopters only)")
    parser.add_argument("--fov_deg", type=float, default=DEFAULT_FOV_DEG,
                        help="horizontal field of view for --ply, degrees")
    parser.add_argument("--compilation_cache_dir", default=None,
                        help="folder of the persistent compilation cache (default: $DUALFOCUS_JAX_CACHE_DIR, else "
                             "~/.cache/dualfocus_jax/xla); repeated runs skip compiling the network")
    parser.add_argument("--nocompilation_cache", dest="compilation_cache", action="store_false", default=True,
                        help="do not use the persistent compilation cache")
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    # Imports JAX and the model: after --help and argument errors, which then answer at once.
    from dualfocus_jax.inference.pipeline import USER_ERRORS, run_prediction

    cache = (args.compilation_cache_dir or True) if args.compilation_cache else False
    try:
        run_prediction(args.stack, args.out, focus_distances=args.focus_distances, checkpoint=args.checkpoint,
                       max_size=args.max_size, align=args.align, method=args.method, ply=args.ply,
                       fov_deg=args.fov_deg, unit=args.unit, focus_unit=args.focus_unit,
                       focus_order=args.focus_order, full_resolution=args.full_resolution,
                       compilation_cache=cache)
    except USER_ERRORS as error:  # input the command cannot use: one message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; lower --max_size (or drop --full_resolution).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no partial file was left in --out (it holds what it held before).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
