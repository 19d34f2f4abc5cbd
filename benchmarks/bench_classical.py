"""Time and peak memory of the thin-lens renderer and the classical depth-from-focus pipeline.

    .venv/bin/python -m benchmarks.bench_classical            # S = 5, 10 at 256², 512², 1024² (minutes on 2 cores)
    .venv/bin/python -m benchmarks.bench_classical --quick    # S = 3 at 64², a smoke run of a few seconds
    .venv/bin/python -m benchmarks.bench_classical --workload "defocus refinement"   # one workload

Prints a markdown table. Every case runs in a fresh Python subprocess, so that compiled code, caches and the
allocator's high-water mark of one case cannot leak into the next:
  - compile: wall time of `jax.jit(f).lower(*inputs).compile()` (tracing + XLA compilation);
  - per call: median wall time of the compiled function over `--repeats` calls (fewer if a single call takes
    longer than `--time_budget` seconds), each ended by `jax.block_until_ready`;
  - peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` at the end minus its value right after the
    imports, so it counts the inputs (their size is its own column), XLA's buffers and the compiled code.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from absl import flags
from scipy import ndimage
from skimage import data, transform

from benchmarks.machine import cpu_model_name
from dualfocus_jax.classical import estimate_depth_classical
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.inference.defocus_refinement import refine_with_defocus
from dualfocus_jax.rendering import NYUV2_CAMERA, render_focal_stack
from dualfocus_jax.rendering.fft_layered import render_layered_stack

FULL_SLICES = (5, 10)
FULL_SIZES = (256, 512, 1024)
# The predictor's defocus refinement of a network depth (NumPy/SciPy on the host: its fit and its posterior).
HOST_REFINEMENT = "defocus refinement"
QUICK_SLICES = (3,)
QUICK_SIZES = (64,)
WORKLOADS = ("render gaussian", "render layered", "render fft disc", "render fft gaussian", "classical (no refine)",
             "classical (refine 300 it)", HOST_REFINEMENT)

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_bool("quick", False, "one tiny size (64², S = 3): a smoke run", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 5, "timed calls per case (after compilation)", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float("time_budget", 20.0, "stop timing a case after this many s", flag_values=FLAGS)
flags.DEFINE_float("case_timeout", 1800.0, "kill a case's subprocess after s", flag_values=FLAGS)
flags.DEFINE_multi_enum("workload", None, WORKLOADS, "workloads to time (repeatable; default: all)",
                        flag_values=FLAGS)
flags.DEFINE_string("case", None, "internal: run one case (JSON), print one JSON line", flag_values=FLAGS)


def _max_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _scene_inputs(size: int, num_slices: int):
    """A photo texture on a slanted plane with a near square: image (size, size, 3) in [0, 1], depth 2-4 m."""
    image = transform.resize(data.astronaut().astype(np.float32) / 255.0, (size, size), anti_aliasing=True)
    x = np.linspace(0.0, 1.0, size, dtype=np.float32)
    depth = np.broadcast_to(3.0 + x[None, :], (size, size)).copy()
    quarter = slice(size // 4, 3 * size // 4)
    depth[quarter, quarter] = 2.0
    focus = 1.0 / np.linspace(1.0 / 2.0, 1.0 / 4.0, num_slices)
    return image.astype(np.float32), depth.astype(np.float32), focus.astype(np.float32)


def _synthetic_stack(image, num_slices: int):
    """A stack of Gaussian-blurred copies of `image` (blur growing away from the middle slice).

    Made with SciPy rather than the renderer, so that the pipeline's memory figure does not include the
    renderer's high-water mark; the pipeline's run time does not depend on the content.
    """
    sigmas = [abs(s - (num_slices - 1) / 2) for s in range(num_slices)]
    return np.stack([ndimage.gaussian_filter(image, (s, s, 0)) for s in sigmas]).astype(np.float32)


def run_case(workload: str, size: int, num_slices: int, repeats: int, time_budget_s: float) -> dict:
    """Measures one case in this process (called in a fresh subprocess); returns the row as a dict. Everything
    the case uses is imported with this module, before the baseline."""
    jax.devices()  # start the backend (its own allocations) before the baseline
    baseline_mib = _max_rss_mib()
    image, depth, focus = _scene_inputs(size, num_slices)
    host = workload.startswith("render fft") or workload == HOST_REFINEMENT
    if workload == HOST_REFINEMENT:
        grey = _synthetic_stack(image, num_slices).mean(-1)
        prior = np.full((size, size), 1.0 / 3.0, np.float32)  # inverse depth, the middle of the 2-4 m range
        compiled = lambda st, a, u: refine_with_defocus(st, a, u, prior, np.full_like(prior, 0.05)).u_HW  # noqa: E731
        inputs = (grey, image.mean(-1), (1.0 / focus).astype(np.float64))
    elif workload.startswith("render fft"):
        # The engine's renderer runs on the host in NumPy/SciPy: nothing to compile, its first call is timed.
        psf = workload.split()[2]
        compiled = lambda im, d, f: render_layered_stack(im, d, f, NYUV2_CAMERA, psf=psf)  # noqa: E731
        inputs = (image, depth, focus)
    elif workload.startswith("render"):
        mode = workload.split()[1]
        function = jax.jit(lambda im, d, f: render_focal_stack(im, d, f, NYUV2_CAMERA, mode=mode))
        inputs = (image, depth, focus)
    else:
        refine = "refine 300" in workload
        function = jax.jit(lambda st, f: estimate_depth_classical(st, f, refine=refine, refine_iters=300))
        inputs = (_synthetic_stack(image, num_slices), focus)
    input_mib = sum(np.asarray(a).nbytes for a in inputs) / 2**20

    start = time.perf_counter()
    if not host:
        compiled = function.lower(*inputs).compile()
    compile_s = time.perf_counter() - start
    compile_peak_mib = _max_rss_mib() - baseline_mib

    call_times = []
    spent = 0.0
    while len(call_times) < repeats and (spent < time_budget_s or len(call_times) < 2):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*inputs))
        call_times.append(time.perf_counter() - start)
        spent += call_times[-1]
    return dict(
        workload=workload,
        size=size,
        slices=num_slices,
        compile_s=compile_s,
        call_s=statistics.median(call_times),
        calls=len(call_times),
        input_mib=input_mib,
        compile_peak_mib=compile_peak_mib,
        peak_mib=_max_rss_mib() - baseline_mib,
    )


def _run_case_in_subprocess(workload, size, num_slices) -> dict:
    case = dict(workload=workload, size=size, slices=num_slices, repeats=FLAGS.repeats, budget=FLAGS.time_budget)
    command = [sys.executable, "-m", "benchmarks.bench_classical", f"--case={json.dumps(case)}"]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=FLAGS.case_timeout, check=False)
    except subprocess.TimeoutExpired:
        return dict(case, error=f"timed out after {FLAGS.case_timeout} s")
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(case, error=f"exit {completed.returncode}: {last_line}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _header() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            "# Classical DFF benchmark",
            "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- machine: {os.cpu_count()} CPUs, {cpu_model_name()}, {platform.system()} {platform.release()}; "
            f"load average at start {load}",
            f"- jax {jax.__version__}, backend {jax.default_backend()} ({jax.devices()[0].device_kind})",
            "- renderer: NYUV2_CAMERA (50 mm f/8, 12 µm), kernel 7 (gaussian), 16 layers (layered, dense per-layer "
            "blur matrices); fft = the engine's "
            "occlusion-aware layered renderer with FFT blurs (NumPy, host; up to 24 soft layers, disc or Gaussian "
            "PSF; no compile step); pipeline: "
            "modified Laplacian, window 9, Gaussian peak fit; input = astronaut photo on a 2-4 m scene",
            "- compile = `jit(f).lower(...).compile()` wall time; per call = median over `calls` runs of the "
            "compiled function, each ended by `block_until_ready`",
            "- peak memory = `ru_maxrss` at the end of a fresh subprocess minus `ru_maxrss` right after its imports "
            "(includes the inputs, whose size is listed, XLA buffers and compiled code); 'after compile' is the "
            "same difference taken right after compilation, so the XLA compiler's own share is visible (where "
            "both are equal, compilation, not execution, set the peak)",
            "",
        ]
    )


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m benchmarks.bench_classical", doc=__doc__)
    if FLAGS.case:
        case = json.loads(FLAGS.case)
        row = run_case(case["workload"], case["size"], case["slices"], case["repeats"], case["budget"])
        print(json.dumps(row))
        return 0

    sizes, slices = (QUICK_SIZES, QUICK_SLICES) if FLAGS.quick else (FULL_SIZES, FULL_SLICES)
    print(_header())
    print("| workload | S | H×W | compile (s) | per call (s) | calls | input (MiB) | peak after compile (MiB) "
          "| peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workload in FLAGS.workload or WORKLOADS:
        for num_slices in slices:
            for size in sizes:
                row = _run_case_in_subprocess(workload, size, num_slices)
                if "error" in row:
                    cells = ["–"] * 5 + [row["error"]]
                else:
                    cells = [f"{row['compile_s']:.2f}", f"{row['call_s']:.3f}", str(row["calls"]),
                             f"{row['input_mib']:.1f}", f"{row['compile_peak_mib']:.0f}", f"{row['peak_mib']:.0f}"]
                print(f"| {workload} | {num_slices} | {size}² | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
