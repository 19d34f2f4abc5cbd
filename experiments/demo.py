"""The main job on the embedded default data: depth from a focal stack rendered from a real RGB-D scene.

    python -m experiments.demo --out runs/demo

Renders a focal stack from the Middlebury motorcycle (shipped with scikit-image) with the thin-lens camera
of the NYUv2 protocol, estimates depth with the classical baseline (raw argmax and with its variational
refinement), and writes pictures and a metrics table into --out.
"""

from __future__ import annotations

import os
import time

from absl import flags, logging

from dualfocus_jax.command_flags import run_with_jax_flags
from experiments.classical_demo import run_classical_demo

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/demo", "Folder for the pictures, arrays and metrics table.")
flags.DEFINE_integer("num_slices", 10, "Number of focal-stack slices, focus spread evenly over the depth range.")
flags.DEFINE_enum("render_mode", "layered", ["layered", "gaussian"],
                  "Thin-lens renderer: occlusion-aware layers or the per-pixel Gaussian protocol.")
flags.DEFINE_enum("measure", "modified_laplacian", ["modified_laplacian", "graylevel_variance", "tenengrad"],
                  "Focus measure of the classical baseline.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep JAX's backend-probing INFO lines out of the demo output
    start = time.perf_counter()
    report = run_classical_demo(FLAGS.out, num_slices=FLAGS.num_slices, render_mode=FLAGS.render_mode,
                                measure=FLAGS.measure)
    print()
    print(report.metrics_markdown)
    print()
    print(f"Done in {time.perf_counter() - start:.1f} s. Results in {os.path.abspath(FLAGS.out)}:")
    for path in report.written_files:
        print(f"  {path}")


if __name__ == "__main__":
    run_with_jax_flags(main)
