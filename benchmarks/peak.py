"""The machine's measured limit, for the "of peak" columns of the benchmarks: the matrix-multiply FLOP/s of
`jax.numpy` on this backend, and the FLOPs XLA counts for a compiled program."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def matmul_peak_flops(dtype: str = "float32", size: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` jitted (size × size) @ (size × size) products in `dtype`."""
    a = jnp.ones((size, size), dtype)
    multiply = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(multiply(a, a))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(multiply(a, a))
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


def xla_flops(compiled) -> float:
    """The FLOPs XLA's cost analysis counts for one run of a compiled program (NaN where it gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one entry per device program
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))
