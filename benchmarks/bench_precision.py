"""float32 against bfloat16 compute (`DualFocusConfig.dtype`): accuracy of the shipped model, forward speed of
the `paper` model, and both against the machine's measured matrix-multiply peak.

    python -m benchmarks.bench_precision                      # accuracy (synthetic_focal test) and speed
    python -m benchmarks.bench_precision --noaccuracy --shapes=5x256x256

Accuracy: the shipped model (or --checkpoint) on the synthetic_focal test split (40 scenes, 5 slices,
prepared on first use) through the training evaluation, in each dtype with the same float32 parameters;
the table gives RMSE and AbsRel and the change from float32. Speed: the `paper` DualFocus forward (B=1,
train=False, every output returned) per --shapes, median of --repeats after compiling; FLOPs as XLA counts
them for the compiled program; "of peak" divides the achieved FLOP/s by the same dtype's matrix-multiply
peak, measured here on a 4096² `a @ b` (benchmarks/peak.py).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks.machine import cpu_model_name
from benchmarks.peak import matmul_peak_flops, xla_flops
from configs import pretrained_small
from dualfocus_jax.command_flags import run_with_jax_flags
from dualfocus_jax.evaluation.evaluate import prediction_function
from dualfocus_jax.evaluation.evaluators import evaluate_entry
from dualfocus_jax.inference import load_exported_checkpoint
from dualfocus_jax.model import DualFocusNet, initial_params, model_config
from experiments.data_setup import prepare_missing_embedded

FLAGS = flags.FLAGS
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes to compare (float32 first).")
flags.DEFINE_list("shapes", ["5x256x256", "10x384x576"], "SxHxW of the timed paper forward passes.")
flags.DEFINE_integer("repeats", 3, "Timed forward passes per case.")
flags.DEFINE_bool("accuracy", True, "Evaluate the shipped model in each dtype on the synthetic_focal test.")
flags.DEFINE_bool("speed", True, "Time the paper forward in each dtype.")
flags.DEFINE_string("checkpoint", "", "Exported checkpoint for the accuracy rows ('' = the shipped model).")


def _timed(call) -> float:
    start = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - start


def forward_row(dtype: str, shape: tuple[int, int, int]) -> dict:
    config = dataclasses.replace(model_config("paper", "dualfocus"), dtype=dtype)
    params = initial_params(config, jax.random.key(0))
    slices, height, width = shape
    stack = jnp.asarray(np.random.default_rng(0).random((1, slices, height, width, 3), dtype=np.float32))
    focus = jnp.asarray(np.linspace(0.1, 1.5, slices, dtype=np.float32)[None])
    forward = jax.jit(lambda p, x, f: DualFocusNet(config).apply(p, x, f, train=False))
    start = time.perf_counter()
    compiled = forward.lower(params, stack, focus).compile()
    compile_s = time.perf_counter() - start
    flops = xla_flops(compiled)
    jax.block_until_ready(compiled(params, stack, focus))
    seconds = float(np.median([_timed(lambda: compiled(params, stack, focus)) for _ in range(FLAGS.repeats)]))
    return {"compile_s": compile_s, "forward_s": seconds, "flops": flops}


def accuracy_rows(dtypes) -> dict[str, dict]:
    params, config = load_exported_checkpoint(FLAGS.checkpoint or None)
    experiment = pretrained_small.get_config()
    prepare_missing_embedded(experiment)  # the synthetic_focal test split, prepared on first use
    evaluation = experiment.evals.test
    rows = {}
    for dtype in dtypes:
        model_config = dataclasses.replace(config, dtype=dtype)
        started = time.perf_counter()
        metrics = evaluate_entry(params, model_config, evaluation, experiment.input.data_dir,
                                 predict=prediction_function(model_config)).metrics
        rows[dtype] = dict(metrics, seconds=time.perf_counter() - started)
    return rows


def main(argv):
    del argv
    dtypes = list(FLAGS.dtypes)
    print(f"# bench_precision on {cpu_model_name()} ({jax.device_count()} × {jax.devices()[0].device_kind}, "
          f"JAX {jax.__version__})\n")
    if FLAGS.accuracy:
        rows = accuracy_rows(dtypes)
        base = rows[dtypes[0]]
        print(f"## Accuracy: {FLAGS.checkpoint or 'the shipped model'} on synthetic_focal test (40 scenes)\n")
        print(f"| dtype | RMSE | AbsRel | RMSE change vs {dtypes[0]} | evaluation s |")
        print("|---|---|---|---|---|")
        for dtype, row in rows.items():
            change = 100.0 * (row["rmse"] / base["rmse"] - 1.0)
            print(f"| {dtype} | {row['rmse']:.4f} | {row['abs_rel']:.4f} | {change:+.2f}% | {row['seconds']:.1f} |")
        print()
    if FLAGS.speed:
        peaks = {dtype: matmul_peak_flops(dtype) for dtype in dtypes}
        print("## Speed: paper DualFocus forward, B=1\n")
        print("matrix-multiply peak (4096²): " + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items()))
        print()
        print("| shape | dtype | compile s | forward s | GFLOP (XLA) | GFLOP/s | of peak (same dtype) |")
        print("|---|---|---|---|---|---|---|")
        for text in FLAGS.shapes:
            shape = tuple(int(v) for v in text.lower().split("x"))
            for dtype in dtypes:
                row = forward_row(dtype, shape)
                achieved = row["flops"] / row["forward_s"]
                print(f"| {text} | {dtype} | {row['compile_s']:.1f} | {row['forward_s']:.3f} | "
                      f"{row['flops'] / 1e9:.1f} | {achieved / 1e9:.0f} | {achieved / peaks[dtype]:.0%} |",
                      flush=True)


if __name__ == "__main__":
    run_with_jax_flags(main)
