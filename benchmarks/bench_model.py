"""Benchmark of DualFocusNet inference: parameters, compile time, forward time and peak memory.

    .venv/bin/python -m benchmarks.bench_model            # paper and small: 5 and 10 slices at 256², 384×576, 1 MP
    .venv/bin/python -m benchmarks.bench_model --quick    # small only, one tiny stack (a smoke run)
    .venv/bin/python -m benchmarks.bench_model --sizes paper --variants dualfocus,no_focal   # a subset
    .venv/bin/python -m benchmarks.bench_model --sizes paper --shapes 10x384x576 --parts  # time per part
    .venv/bin/python -m benchmarks.bench_model --sizes small --cost_upsampling joint_bilateral  # the shipped model

Each case runs in a fresh subprocess so that its peak resident memory (`ru_maxrss`, which includes the
Python runtime, XLA's compilation and the parameters) belongs to that case alone. Forward time is the median
of several jitted `train=False` calls at B=1 after `block_until_ready`, the first (compiling) call excluded;
every output is returned (depth levels and all-in-focus image included), so XLA prunes nothing.
The reference is the PyTorch DFV implementation (19.5M parameters) on this 2-core CPU: 0.79 s for 5×256×256
and 3.10 s for 10×384×576 per forward pass; the table prints ours/reference for `paper` with both
constraints. FLOPs are XLA's count for the compiled program; "of peak" divides the achieved FLOP/s by the
matrix-multiply peak of the same dtype measured at the start (benchmarks/peak.py). `--dtype` picks the
compute precision (`DualFocusConfig.dtype`) of every case. `--parts` adds, per case, the time, FLOPs and share
of peak of each part of the forward pass (encoder, spatial branch, 3D decoder, projection...; model_parts.py).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import numpy as np
from absl import flags

from benchmarks.machine import cpu_model_name
from benchmarks.model_parts import benchmark_case, time_parts
from benchmarks.peak import matmul_peak_flops, xla_flops
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.model import DualFocusNet, parameter_count
from dualfocus_jax.model.config import COST_UPSAMPLINGS

# The PyTorch DFV reference measured on this project's 2-core machine (DEVELOPERS.md, issue 15).
REFERENCE_DFV_SECONDS = {(5, 256, 256): 0.79, (10, 384, 576): 3.10}
FULL_SHAPES = [(5, 256, 256), (10, 256, 256), (5, 384, 576), (10, 384, 576), (5, 1024, 1024), (10, 1024, 1024)]
# Both constraints on ("dualfocus") and off ("dfv") at every shape; each one alone at this shape.
ONE_CONSTRAINT_SHAPE = (10, 384, 576)
LARGE_PIXELS = 1024 * 1024  # cases this size or larger are timed fewer times (tens of seconds each on a CPU)
QUICK_SHAPES = [(3, 64, 64)]
VARIANTS = ["dualfocus", "no_spatial", "no_focal", "dfv"]

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_bool("quick", False, "small size, one tiny stack", flag_values=FLAGS)
flags.DEFINE_integer("repeats", None, "timed forward passes per case", flag_values=FLAGS)
flags.DEFINE_list("sizes", None, "comma-separated subset of paper,small", flag_values=FLAGS)
flags.DEFINE_list("variants", None, f"comma-separated subset of {','.join(VARIANTS)}", flag_values=FLAGS)
flags.DEFINE_list("shapes", None, "comma-separated subset of SxHxW shapes, e.g. 5x256x256,10x384x576 "
                  "(default: all of " + ",".join("x".join(map(str, shape)) for shape in FULL_SHAPES) + ")",
                  flag_values=FLAGS)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype of every case (DualFocusConfig.dtype)",
                  flag_values=FLAGS)
flags.DEFINE_enum("cost_upsampling", "bilinear", list(COST_UPSAMPLINGS),
                  "how every case upsamples its finest costs (DualFocusConfig.cost_upsampling; the shipped model: "
                  "joint_bilateral)", flag_values=FLAGS)
flags.DEFINE_bool("parts", False, "also time each part of the forward pass alone (a table per case)",
                  flag_values=FLAGS)
flags.DEFINE_list("case", None, "internal: SIZE,VARIANT,S,H,W of the one case to run", flag_values=FLAGS)


def parse_shape(text: str) -> tuple[int, int, int]:
    """(S, H, W) from "SxHxW" ("×" also accepted); ValueError naming the expected form otherwise."""
    parts = text.strip().lower().replace("×", "x").split("x")
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"a shape is SxHxW with positive integers, e.g. 10x384x576; got {text!r}.")
    return tuple(int(part) for part in parts)


def _valid_shapes(shapes) -> bool:
    try:
        [parse_shape(shape) for shape in shapes or []]
    except ValueError:
        return False
    return True


flags.register_validator("shapes", _valid_shapes, "each shape is SxHxW with positive integers, e.g. 10x384x576",
                         flag_values=FLAGS)
flags.register_validator("case", lambda case: case is None or len(case) == 5, "needs SIZE,VARIANT,S,H,W",
                         flag_values=FLAGS)


def run_case(size: str, variant: str, slices: int, height: int, width: int, repeats: int,
             dtype: str = "float32", cost_upsampling: str = "bilinear") -> dict:
    """Measures one case in this process; returns a JSON-serialisable dict."""
    config, params, stack, focus = benchmark_case(size, variant, slices, height, width, dtype, cost_upsampling)
    model = DualFocusNet(config)
    forward = jax.jit(lambda p, x, f: model.apply(p, x, f, train=False))

    start = time.perf_counter()
    compiled = forward.lower(params, stack, focus).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, stack, focus))  # warm-up: first-run allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, stack, focus))
        times.append(time.perf_counter() - start)
    return dict(
        size=size, variant=variant, shape=[slices, height, width], params=parameter_count(params),
        compile_s=compile_s, forward_s=float(np.median(times)), forward_min_s=float(np.min(times)),
        flops=xla_flops(compiled),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    )


def _case_in_subprocess(size, variant, shape, repeats, dtype, cost_upsampling="bilinear", parts: bool = False):
    """run_case's dict (or with parts, time_parts' rows) from a fresh subprocess."""
    command = [sys.executable, "-m", "benchmarks.bench_model", f"--case={','.join([size, variant, *map(str, shape)])}",
               f"--repeats={repeats}", f"--dtype={dtype}", f"--cost_upsampling={cost_upsampling}",
               f"--{'' if parts else 'no'}parts"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {size}/{variant}/{shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_parts(size: str, variant: str, shape, repeats: int, peak: float) -> None:
    rows = _case_in_subprocess(size, variant, shape, repeats, FLAGS.dtype, FLAGS.cost_upsampling, parts=True)
    total = sum(row["forward_s"] for row in rows)
    print()
    print(f"Parts of {size}/{variant} at {'×'.join(map(str, shape))} ({FLAGS.dtype}), each jitted alone "
          f"(sum {total:.3f} s):")
    print()
    print("| part | time (s) | share | GFLOP (XLA) | GFLOP/s | of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        achieved = row["flops"] / row["forward_s"]
        print(f"| {row['part']} | {row['forward_s']:.3f} | {row['forward_s'] / total:.0%} | {row['flops'] / 1e9:.1f} "
              f"| {achieved / 1e9:.0f} | {achieved / peak:.0%} |", flush=True)


def _machine() -> str:
    return f"{cpu_model_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m benchmarks.bench_model", doc=__doc__)
    if FLAGS.case:
        size, variant, *shape = FLAGS.case
        measure = time_parts if FLAGS.parts else run_case
        print(json.dumps(measure(size, variant, *(int(n) for n in shape), repeats=FLAGS.repeats or 5,
                                 dtype=FLAGS.dtype, cost_upsampling=FLAGS.cost_upsampling)))
        return 0

    sizes = FLAGS.sizes or (["small"] if FLAGS.quick else ["paper", "small"])
    shapes = [parse_shape(shape) for shape in FLAGS.shapes] if FLAGS.shapes else (
        QUICK_SHAPES if FLAGS.quick else FULL_SHAPES)
    repeats = FLAGS.repeats or (2 if FLAGS.quick else 5)

    def variants_at(shape):
        if FLAGS.variants:
            return FLAGS.variants
        both_or_none = ["dualfocus", "dfv"]
        return VARIANTS if tuple(shape) == ONE_CONSTRAINT_SHAPE and not FLAGS.quick else both_or_none

    def repeats_at(shape):
        return repeats if FLAGS.repeats or shape[1] * shape[2] < LARGE_PIXELS else 3

    print(f"# bench_model — {_machine()}")
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    print(f"# B=1, jitted train=False forward, median of {repeats} runs (3 at 1 MP) after a warm-up; peak RSS per case "
          "measured in a fresh subprocess (ru_maxrss: runtime + compilation + parameters + activations)")
    peak = matmul_peak_flops(FLAGS.dtype, size=1024 if FLAGS.quick else 4096)
    print(f"# finest costs upsampled: {FLAGS.cost_upsampling}")
    print(f"# compute dtype {FLAGS.dtype}; measured {FLAGS.dtype} matrix-multiply peak {peak / 1e9:.0f} GFLOP/s")
    print()
    print("| size | variant | dtype | S×H×W | params | compile (s) | forward (s) | GFLOP (XLA) | GFLOP/s | of peak | "
          "peak RSS (MiB) | ours / DFV ref |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for shape in shapes:
            for variant in variants_at(shape):
                result = _case_in_subprocess(size, variant, shape, repeats_at(shape), FLAGS.dtype,
                                             FLAGS.cost_upsampling)
                achieved = result["flops"] / result["forward_s"]
                reference = REFERENCE_DFV_SECONDS.get(tuple(shape))
                ratio = (f"{result['forward_s'] / reference:.2f}"
                         if reference and size == "paper" and variant == "dualfocus" else "")
                print(f"| {size} | {variant} | {FLAGS.dtype} | {'×'.join(map(str, shape))} | "
                      f"{result['params'] / 1e6:.2f}M | {result['compile_s']:.1f} | {result['forward_s']:.3f} | "
                      f"{result['flops'] / 1e9:.1f} | {achieved / 1e9:.0f} | {achieved / peak:.0%} | "
                      f"{result['peak_rss_mib']:.0f} | {ratio} |", flush=True)
    if FLAGS.parts:
        for size in sizes:
            for shape in shapes:
                for variant in variants_at(shape):
                    print_parts(size, variant, shape, repeats_at(shape), peak)
    print()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if not FLAGS.quick:
        print("Reference: PyTorch DFV (19.5M parameters), this 2-core CPU: 0.79 s (5×256×256), 3.10 s (10×384×576).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
