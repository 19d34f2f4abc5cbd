"""Scaling of the least-squares gradient integrators: DCT vs unrolled CG vs a dense solve.

Run from the repo root:
    .venv/bin/python -m benchmarks.bench_solvers            # grids 16² … 256²
    .venv/bin/python -m benchmarks.bench_solvers --quick    # grids 16² … 64², fewer repeats

Prints a markdown table: per grid size, the compile time and the median per-call time (after
`block_until_ready`) of each solver on a batch of fields (the DCT solver with both of its transforms,
`jax.scipy.fft` and dense DCT matrices), and the max error of each iterative solver relative
to the exact DCT solution (max |z − z_dct| / max |z_dct|), unit weights throughout so that the DCT solution
is the exact answer. The dense solve (Cholesky of the pinned normal matrix PᵀP + 11ᵀ built from the explicit
(2HW − H − W) × HW matrix P, factorised anew on every call as a per-input dense solve must, then one
triangular solve pair for the whole batch) runs only where it is affordable (≤ 32², cost O((HW)³)).
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from absl import flags

from benchmarks.machine import cpu_model_name
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.variational import integrate_gradients_cg, integrate_gradients_dct

DENSE_MAX_SIDE = 32

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_bool("quick", False, "grids 16²–64² and 3 repeats (a smoke run)", flag_values=FLAGS)
flags.DEFINE_integer("batch", 32, "fields per call", flag_values=FLAGS)
flags.DEFINE_integer("cg_iters", 50, "unrolled steps of plain CG", flag_values=FLAGS)
flags.DEFINE_integer("pcg_iters", 10, "unrolled steps of DCT-preconditioned CG", flag_values=FLAGS)
flags.DEFINE_integer("repeats", None, "timed calls per entry (default 7, quick 3)", flag_values=FLAGS)


def dense_difference_matrix(side: int) -> np.ndarray:
    """Explicit forward-difference operator P for a side×side grid (x rows, then y rows), float64."""
    index = np.arange(side * side).reshape(side, side)
    plus = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    minus = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    matrix = np.zeros((plus.size, side * side))
    matrix[np.arange(plus.size), plus] = 1.0
    matrix[np.arange(plus.size), minus] = -1.0
    return matrix


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls; fn must block until its result is ready."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compiled_timing(fn, args, repeats: int):
    """(compile seconds, median seconds per call, output) of jax.jit(fn) on args."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    out = compiled(*args).block_until_ready()  # warm-up call, not timed
    per_call_s = median_seconds(lambda: compiled(*args).block_until_ready(), repeats)
    return compile_s, per_call_s, out


def relative_max_error(z, reference) -> float:
    reference = np.asarray(reference, np.float64)
    return float(np.abs(np.asarray(z, np.float64) - reference).max() / np.abs(reference).max())


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m benchmarks.bench_solvers", doc=__doc__)
    sides = (16, 32, 64) if FLAGS.quick else (16, 32, 64, 128, 256)
    repeats = FLAGS.repeats or (3 if FLAGS.quick else 7)

    device = jax.devices()[0]
    print("# Least-squares gradient integration: scaling with grid size\n")
    print(f"- machine: {cpu_model_name()} ({platform.machine()}), {os.cpu_count()} CPUs, {platform.system()}")
    print(f"- jax {jax.__version__}, device: {device.device_kind} ({device.platform}), float32")
    print(f"- batch of {FLAGS.batch} fields per call, median of {repeats} calls after `block_until_ready`")
    print(f"- CG: {FLAGS.cg_iters} plain steps; PCG: {FLAGS.pcg_iters} steps preconditioned by the DCT solve;")
    print("  err = max|z − z_dct| / max|z_dct| with unit weights (the DCT solution is exact)\n")

    header = (
        "| grid | DCT compile s | DCT ms/call | DCT-matmul compile s | DCT-matmul ms/call "
        "| CG compile s | CG ms/call | CG err "
        "| PCG compile s | PCG ms/call | PCG err | dense Cholesky ms/call | dense vs DCT err |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rng = np.random.default_rng(0)
    for side in sides:
        shape = (FLAGS.batch, side, side)
        grad_x = jnp.asarray(rng.normal(size=shape), jnp.float32)
        grad_y = jnp.asarray(rng.normal(size=shape), jnp.float32)
        dct_compile, dct_call, z_dct = compiled_timing(integrate_gradients_dct, (grad_x, grad_y), repeats)

        def dct_matmul(gx, gy):
            return integrate_gradients_dct(gx, gy, transform="matmul")

        mm_compile, mm_call, _ = compiled_timing(dct_matmul, (grad_x, grad_y), repeats)

        def cg(gx, gy):
            return integrate_gradients_cg(gx, gy, num_iters=FLAGS.cg_iters)

        def pcg(gx, gy):
            return integrate_gradients_cg(gx, gy, num_iters=FLAGS.pcg_iters, preconditioner="dct")

        cg_compile, cg_call, z_cg = compiled_timing(cg, (grad_x, grad_y), repeats)
        pcg_compile, pcg_call, z_pcg = compiled_timing(pcg, (grad_x, grad_y), repeats)

        dense_call, dense_err = "–", "–"
        if side <= DENSE_MAX_SIDE:
            matrix = dense_difference_matrix(side)
            gx, gy = np.asarray(grad_x, np.float64), np.asarray(grad_y, np.float64)
            rows_x = gx[:, :, :-1].reshape(FLAGS.batch, -1)
            rows_y = gy[:, :-1, :].reshape(FLAGS.batch, -1)
            targets = np.concatenate([rows_x, rows_y], axis=1).T  # (rows of P, batch)

            normal_rhs = matrix.T @ targets  # PᵀΓ, (HW, batch)

            def dense_solve(matrix=matrix, normal_rhs=normal_rhs):
                # + 11ᵀ pins the null space: 1ᵀPᵀΓ = 0 forces 1ᵀz = 0, so z is the zero-mean solution.
                pinned = matrix.T @ matrix + 1.0
                return scipy.linalg.cho_solve(scipy.linalg.cho_factor(pinned), normal_rhs)

            z_dense = dense_solve().T.reshape(shape)
            dense_call = f"{1e3 * median_seconds(dense_solve, repeats):.1f}"
            dense_err = f"{relative_max_error(z_dct, z_dense):.1e}"

        print(
            f"| {side}² | {dct_compile:.2f} | {1e3 * dct_call:.2f} | {mm_compile:.2f} | {1e3 * mm_call:.2f} "
            f"| {cg_compile:.2f} | {1e3 * cg_call:.1f} "
            f"| {relative_max_error(z_cg, z_dct):.1e} | {pcg_compile:.2f} | {1e3 * pcg_call:.1f} "
            f"| {relative_max_error(z_pcg, z_dct):.1e} | {dense_call} | {dense_err} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
