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

import sys
from collections.abc import Sequence

from absl import flags

from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.inference.focus_units import FOCUS_ORDERS, FOCUS_UNITS
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG

PROGRAM = "dualfocus-predict"
FLAGS = flags.FlagValues()  # the predictor's own (dualfocus_jax.command_flags says why)
flags.DEFINE_string("stack", None, "folder of the slices (jpg/png/tif), one per focus setting", required=True,
                    flag_values=FLAGS)
flags.DEFINE_string("out", None, "folder for the outputs (created; one run at a time)", required=True,
                    flag_values=FLAGS)
flags.DEFINE_string("focus_distances", None,
                    "comma list (one per image, natural file-name order; a unit suffix such as 0.5m, 50cm or 2D is "
                    "allowed) or a text file with one value per line; default: focus_distances.txt in --stack, else "
                    "decimals in the file names, else EXIF", flag_values=FLAGS)
flags.DEFINE_enum("focus_unit", None, FOCUS_UNITS,
                  "what the focus values are: distance from the camera (> 0), diopter (1/m, 0 = infinity, may be "
                  "negative) or disparity (any sign, larger = nearer); depth comes out in the same unit (default: "
                  "the values' own unit suffix, else distance)", flag_values=FLAGS)
flags.DEFINE_enum("focus_order", None, FOCUS_ORDERS,
                  "for a stack with no focus values: the file-name order of the slices; gives relative depth in "
                  "slice units (0 = nearest slice)", flag_values=FLAGS)
flags.DEFINE_string("unit", None, "name of the unit of the focus values, for labels (default: m for distances, D for "
                    "diopters)", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "exported checkpoint folder (default: the shipped model, "
                    "dualfocus_jax/pretrained/small_engine_stage15; dualfocus_jax/pretrained/small_synthetic is "
                    "the one trained on NYUv2-camera 5-slice synthetic scenes only)", flag_values=FLAGS)
flags.DEFINE_enum("method", "network", ["network", "classical"],
                  "network (the DualFocus checkpoint) or classical (focus measure + refinement)", flag_values=FLAGS)
flags.DEFINE_bool("flips", False, "network: also predict on the stack's left-right, up-down and double mirror images "
                  "and average (4x the network time; a little more accurate on every test set we score)",
                  flag_values=FLAGS)
flags.DEFINE_bool("defocus_refinement", True, "network: refine its depth by how blurred each slice is (a blur model "
                  "fitted to the stack; kept as the network gave it where the stack shows no usable blur); "
                  "--nodefocus_refinement: the network's depth alone", flag_values=FLAGS)
flags.DEFINE_integer("max_size", 640, "longer image side of the working resolution in pixels; the outputs are "
                     "upsampled to the photos' own pixel grid", flag_values=FLAGS)
flags.DEFINE_bool("full_resolution", False, "predict at the photos' full resolution instead (slow, memory-hungry)",
                  flag_values=FLAGS)
flags.DEFINE_bool("align", True, "register the slices (scale + shift) before predicting; --noalign: use the slices "
                  "as they are", flag_values=FLAGS)
flags.DEFINE_bool("ply", False, "also write a coloured point cloud points.ply (distances and diopters only)",
                  flag_values=FLAGS)
flags.DEFINE_float("fov_deg", DEFAULT_FOV_DEG, "horizontal field of view for --ply, degrees", flag_values=FLAGS)
flags.DEFINE_string("compilation_cache_dir", None, "folder of the persistent compilation cache (default: "
                    "$DUALFOCUS_JAX_CACHE_DIR, else ~/.cache/dualfocus_jax/xla); repeated runs skip compiling the "
                    "network", flag_values=FLAGS)
flags.DEFINE_bool("compilation_cache", True, "use the persistent compilation cache; --nocompilation_cache: do not "
                  "use the persistent compilation cache", flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
    """The command; `argv` without the program name (None: the command line). A flag error exits with status 2."""
    parse_flags(FLAGS, argv, program=PROGRAM, doc=__doc__)
    # Imports JAX and the model: after --help and flag errors, which then answer at once.
    from dualfocus_jax.inference.pipeline import USER_ERRORS, run_prediction

    cache = (FLAGS.compilation_cache_dir or True) if FLAGS.compilation_cache else False
    try:
        run_prediction(FLAGS.stack, FLAGS.out, focus_distances=FLAGS.focus_distances, checkpoint=FLAGS.checkpoint,
                       max_size=FLAGS.max_size, align=FLAGS.align, method=FLAGS.method, ply=FLAGS.ply,
                       fov_deg=FLAGS.fov_deg, unit=FLAGS.unit, focus_unit=FLAGS.focus_unit,
                       focus_order=FLAGS.focus_order, full_resolution=FLAGS.full_resolution,
                       compilation_cache=cache, flips=FLAGS.flips, defocus_refinement=FLAGS.defocus_refinement)
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
