"""Training throughput on this machine: the jitted train step of the `small` and `paper` models, and the input
pipeline on its own (it must feed at least 10× what the train step consumes).

    python -m benchmarks.bench_train                       # small and paper, demo input (synthetic_focal)
    python -m benchmarks.bench_train --sizes=small --steps=20 --data_dir=~/tensorflow_datasets

The train step runs on random inputs of the demo's shape (batch 4, 5 slices, 64×64 crops; override with
--batch/--crop), on all local devices, with the demo's optimizer; compile time is reported separately. The
input pipeline is timed for each source of --sources: `synthetic_focal`, the demo config's
(`configs/demo.py`: tfds.data_source + grain, random crops, flips; prepared on first use), and `engine`, the
focal-stack engine of `configs/engine_small.py` (stacks drawn and rendered on the fly in grain threads), both
at the timed batch and crop. "input / train" is the input pipeline's rate
over the train step's: above 1× the source keeps up with training on this machine, though both share its
cores when they run together.

`--recipe=paper` times the input at the paper recipe instead (batch 20 of 224² crops, 5 slices, flips), for
each `--workers` count (grain worker processes; 0 = threads in this process), and gives its CPU cost:
examples per CPU-core-second (CPU time of this process and its workers, from /proc) and the cores it takes to
feed the H200's measured paper train step (`--feed_rate`, about 500 stacks/s).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.machine import process_tree_cpu_seconds
from benchmarks.peak import matmul_peak_flops, xla_flops
from configs import demo, engine_small
from dualfocus_jax.command_flags import run_with_jax_flags
from dualfocus_jax.training import mesh as mesh_lib
from dualfocus_jax.training.input_pipeline import training_iterator
from dualfocus_jax.training.train_state import initial_train_state, optimizer_and_schedule
from dualfocus_jax.training.train_step import make_train_step
from dualfocus_jax.training.trainer import model_config_from
from experiments.data_setup import prepare_missing_embedded

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["small", "paper"], "Model sizes to time.")
flags.DEFINE_integer("batch", 4, "Global batch of the timed train step.")
flags.DEFINE_integer("crop", 64, "Height and width of the training crops, pixels.")
flags.DEFINE_integer("slices", 5, "Slices per stack.")
flags.DEFINE_integer("steps", 10, "Timed train steps per size (after one compile step).")
flags.DEFINE_integer("input_batches", 100, "Timed input batches (after 5 warm-up batches).")
flags.DEFINE_string("data_dir", "", "TFDS data_dir of synthetic_focal ('' = default).")
flags.DEFINE_list("sources", ["synthetic_focal", "engine"], "Input sources to time: synthetic_focal, engine.")
flags.DEFINE_enum("recipe", "demo", ["demo", "paper"], "demo: train step and input at --batch/--crop; paper: "
                  "the input alone at batch 20, 224² crops, 5 slices.")
flags.DEFINE_list("workers", ["0", "2"], "--recipe=paper: grain worker process counts to time.")
flags.DEFINE_float("feed_rate", 500.0, "--recipe=paper: stacks/s the accelerator's train step consumes.")
SOURCES = ("synthetic_focal", "engine")
PAPER_INPUT = dict(batch_size=20, crop_size=(224, 224), num_slices=5)
SOURCE_SIZE = {"synthetic_focal": 128}  # image side of a source whose images are smaller than the recipe's crops


def time_train_step(size: str) -> dict:
    config = demo.get_config()
    config.model.size = size
    model_config = model_config_from(config.model)
    optimizer, schedule = optimizer_and_schedule(config.optimizer, config.train.total_steps)
    mesh = mesh_lib.data_parallel_mesh()
    state = mesh_lib.replicated_on_mesh(initial_train_state(model_config, optimizer, jax.random.key(0)), mesh)
    rng = np.random.default_rng(0)
    b, s, c = FLAGS.batch, FLAGS.slices, FLAGS.crop
    batch = mesh_lib.global_batch_array({
        "stack": rng.uniform(size=(b, s, c, c, 3)).astype(np.float32),
        "focus": np.broadcast_to(np.linspace(1.0, 2.0, s, dtype=np.float32), (b, s)).copy(),
        "depth": rng.uniform(1.0, 2.0, (b, c, c)).astype(np.float32),
        "valid": np.ones((b, c, c), bool)}, mesh)
    step = make_train_step(model_config, optimizer, schedule, mesh)
    start = time.perf_counter()
    step = step.lower(state, batch).compile()  # the executable timed below, so it is compiled once
    flops = xla_flops(step)
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)  # like the trainer, nothing is read back between steps
    elapsed = time.perf_counter() - start
    return {"size": size, "compile_s": compile_s, "steps_per_s": FLAGS.steps / elapsed,
            "examples_per_s": FLAGS.steps * b / elapsed, "flops": flops, "dtype": model_config.dtype}


def time_input_pipeline(source: str, *, batch: int, crop: int, slices: int, workers: int = 0) -> dict:
    """Examples/s of one source's input pipeline at one batch shape, and examples per CPU-core-second."""
    config = demo.get_config() if source == "synthetic_focal" else engine_small.get_config()
    config.input.update(batch_size=batch, crop_size=(crop, crop), num_slices=slices, crop_sizes=(),
                        slice_counts=(), num_workers=workers)  # one shape, so the rates compare
    if FLAGS.data_dir:
        config.input.data_dir = FLAGS.data_dir
    if source == "synthetic_focal":
        prepare_missing_embedded(config)  # the demo's data, prepared on first use (the engine draws its stacks)
    iterator = training_iterator(config.input, seed=0)
    for _ in range(5):
        next(iterator)
    cpu_start, start = process_tree_cpu_seconds(), time.perf_counter()
    for _ in range(FLAGS.input_batches):
        next(iterator)
    elapsed, cpu = time.perf_counter() - start, process_tree_cpu_seconds() - cpu_start
    examples = FLAGS.input_batches * batch
    return {"examples_per_s": examples / elapsed, "per_core_s": examples / max(cpu, 1e-9)}


def paper_recipe_input() -> None:
    print(f"input pipeline at the paper recipe: batch {PAPER_INPUT['batch_size']}, {PAPER_INPUT['num_slices']} "
          f"slices, {PAPER_INPUT['crop_size'][0]}² crops, {FLAGS.input_batches} batches; feeding "
          f"{FLAGS.feed_rate:.0f} stacks/s")
    print("| source | crop | workers | examples/s | examples per core-second | cores to feed |")
    print("|---|---|---|---|---|---|")
    for source in FLAGS.sources:
        # synthetic_focal's scenes are 128² (smaller than the recipe's crops): whole scenes there.
        crop = min(PAPER_INPUT["crop_size"][0], SOURCE_SIZE.get(source, PAPER_INPUT["crop_size"][0]))
        for workers in (int(v) for v in FLAGS.workers):
            row = time_input_pipeline(source, batch=PAPER_INPUT["batch_size"], crop=crop,
                                      slices=PAPER_INPUT["num_slices"], workers=workers)
            print(f"| {source} | {crop}² | {workers} | {row['examples_per_s']:.1f} | {row['per_core_s']:.1f} | "
                  f"{FLAGS.feed_rate / row['per_core_s']:.0f} |", flush=True)


def main(argv):
    del argv
    print(f"devices: {jax.device_count()} × {jax.devices()[0].device_kind}; batch {FLAGS.batch}, "
          f"{FLAGS.slices} slices, {FLAGS.crop}×{FLAGS.crop} crops")
    unknown = sorted(set(FLAGS.sources) - set(SOURCES))
    if unknown:
        raise app.UsageError(f"--sources: unknown {unknown}; known: {', '.join(SOURCES)}")
    if FLAGS.recipe == "paper":
        paper_recipe_input()
        return
    input_rates = {}
    for source in FLAGS.sources:
        input_rates[source] = time_input_pipeline(source, batch=FLAGS.batch, crop=FLAGS.crop,
                                                  slices=FLAGS.slices)["examples_per_s"]
        print(f"input pipeline alone, {source}: {input_rates[source]:.1f} examples/s", flush=True)
    ratios = " | ".join(f"input / train ({source})" for source in input_rates)
    peak = matmul_peak_flops("float32")
    print(f"float32 matrix-multiply peak (4096²): {peak / 1e9:.0f} GFLOP/s")
    print(f"| model | dtype | compile (s) | train steps/s | examples/s | GFLOP/step (XLA) | GFLOP/s | of peak | "
          f"{ratios} |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(input_rates))
    for size in FLAGS.sizes:
        row = time_train_step(size)
        achieved = row["flops"] * row["steps_per_s"]
        cells = " | ".join(f"{rate / row['examples_per_s']:.1f}×" for rate in input_rates.values())
        print(f"| {size} | {row['dtype']} | {row['compile_s']:.1f} | {row['steps_per_s']:.2f} | "
              f"{row['examples_per_s']:.1f} | {row['flops'] / 1e9:.1f} | {achieved / 1e9:.0f} | "
              f"{achieved / peak:.0%} | {cells} |", flush=True)


if __name__ == "__main__":
    run_with_jax_flags(main)
