"""Benchmark of DualFocusNet inference: parameters, compile time, forward time and peak memory.

    .venv/bin/python -m benchmarks.bench_model            # paper and small: 5 and 10 slices at 256², 384×576, 1 MP
    .venv/bin/python -m benchmarks.bench_model --quick    # small only, one tiny stack (a smoke run)
    .venv/bin/python -m benchmarks.bench_model --sizes paper --variants dualfocus,no_focal   # a subset

Each case runs in a fresh subprocess so that its peak resident memory (`ru_maxrss`, which includes the
Python runtime, XLA's compilation and the parameters) belongs to that case alone. Forward time is the median
of several jitted `train=False` calls at B=1 after `block_until_ready`, the first (compiling) call excluded;
every output is returned (depth levels and all-in-focus image included), so XLA prunes nothing.
The reference is the PyTorch DFV implementation (19.5M parameters) on this 2-core CPU: 0.79 s for 5×256×256
and 3.10 s for 10×384×576 per forward pass; the table prints ours/reference for `paper` with both
constraints. FLOPs are XLA's count for the compiled program; "of peak" divides the achieved FLOP/s by the
matrix-multiply peak of the same dtype measured at the start (benchmarks/peak.py). `--dtype` picks the
compute precision (`DualFocusConfig.dtype`) of every case.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import cpu_model_name
from benchmarks.peak import matmul_peak_flops, xla_flops
from dualfocus_jax.model import DualFocusNet, initial_params, model_config, parameter_count

# The PyTorch DFV reference measured on this project's 2-core machine (DEVELOPERS.md, issue 15).
REFERENCE_DFV_SECONDS = {(5, 256, 256): 0.79, (10, 384, 576): 3.10}
FULL_SHAPES = [(5, 256, 256), (10, 256, 256), (5, 384, 576), (10, 384, 576), (5, 1024, 1024), (10, 1024, 1024)]
# Both constraints on ("dualfocus") and off ("dfv") at every shape; each one alone at this shape.
ONE_CONSTRAINT_SHAPE = (10, 384, 576)
LARGE_PIXELS = 1024 * 1024  # cases this size or larger are timed fewer times (tens of seconds each on a CPU)
QUICK_SHAPES = [(3, 64, 64)]
VARIANTS = ["dualfocus", "no_spatial", "no_focal", "dfv"]


def run_case(size: str, variant: str, slices: int, height: int, width: int, repeats: int,
             dtype: str = "float32") -> dict:
    """Measures one case in this process; returns a JSON-serialisable dict."""
    config = model_config(size, variant, dtype=dtype)
    model = DualFocusNet(config)
    params = initial_params(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    stack = jnp.asarray(rng.random((1, slices, height, width, 3), dtype=np.float32))
    focus = jnp.asarray(np.linspace(0.1, 1.5, slices, dtype=np.float32)[None])
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


def _case_in_subprocess(size, variant, shape, repeats, dtype) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_model", "--case", size, variant,
               *(str(n) for n in shape), "--repeats", str(repeats), "--dtype", dtype]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {size}/{variant}/{shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine() -> str:
    return f"{cpu_model_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size, one tiny stack")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward passes per case")
    parser.add_argument("--sizes", default=None, help="comma-separated subset of paper,small")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="compute dtype of every case (DualFocusConfig.dtype)")
    parser.add_argument("--case", nargs=5, metavar=("SIZE", "VARIANT", "S", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.case:
        size, variant, *shape = args.case
        print(json.dumps(run_case(size, variant, *(int(n) for n in shape), repeats=args.repeats or 5,
                                  dtype=args.dtype)))
        return


    sizes = args.sizes.split(",") if args.sizes else (["small"] if args.quick else ["paper", "small"])
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (2 if args.quick else 5)

    def variants_at(shape):
        if args.variants:
            return args.variants.split(",")
        both_or_none = ["dualfocus", "dfv"]
        return VARIANTS if tuple(shape) == ONE_CONSTRAINT_SHAPE and not args.quick else both_or_none

    def repeats_at(shape):
        return repeats if args.repeats or shape[1] * shape[2] < LARGE_PIXELS else 3

    print(f"# bench_model — {_machine()}")
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    print(f"# B=1, jitted train=False forward, median of {repeats} runs (3 at 1 MP) after a warm-up; peak RSS per case "
          "measured in a fresh subprocess (ru_maxrss: runtime + compilation + parameters + activations)")
    peak = matmul_peak_flops(args.dtype, size=1024 if args.quick else 4096)
    print(f"# compute dtype {args.dtype}; measured {args.dtype} matrix-multiply peak {peak / 1e9:.0f} GFLOP/s")
    print()
    print("| size | variant | dtype | S×H×W | params | compile (s) | forward (s) | GFLOP (XLA) | GFLOP/s | of peak | "
          "peak RSS (MiB) | ours / DFV ref |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for shape in shapes:
            for variant in variants_at(shape):
                result = _case_in_subprocess(size, variant, shape, repeats_at(shape), args.dtype)
                achieved = result["flops"] / result["forward_s"]
                reference = REFERENCE_DFV_SECONDS.get(tuple(shape))
                ratio = (f"{result['forward_s'] / reference:.2f}"
                         if reference and size == "paper" and variant == "dualfocus" else "")
                print(f"| {size} | {variant} | {args.dtype} | {'×'.join(map(str, shape))} | "
                      f"{result['params'] / 1e6:.2f}M | {result['compile_s']:.1f} | {result['forward_s']:.3f} | "
                      f"{result['flops'] / 1e9:.1f} | {achieved / 1e9:.0f} | {achieved / peak:.0%} | "
                      f"{result['peak_rss_mib']:.0f} | {ratio} |", flush=True)
    print()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if not args.quick:
        print("Reference: PyTorch DFV (19.5M parameters), this 2-core CPU: 0.79 s (5×256×256), 3.10 s (10×384×576).")


if __name__ == "__main__":
    main()
