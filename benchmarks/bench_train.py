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
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["small", "paper"], "Model sizes to time.")
flags.DEFINE_integer("batch", 4, "Global batch of the timed train step.")
flags.DEFINE_integer("crop", 64, "Height and width of the training crops, pixels.")
flags.DEFINE_integer("slices", 5, "Slices per stack.")
flags.DEFINE_integer("steps", 10, "Timed train steps per size (after one compile step).")
flags.DEFINE_integer("input_batches", 100, "Timed input batches (after 5 warm-up batches).")
flags.DEFINE_string("data_dir", "", "TFDS data_dir of synthetic_focal ('' = default).")
flags.DEFINE_list("sources", ["synthetic_focal", "engine"], "Input sources to time: synthetic_focal, engine.")
SOURCES = ("synthetic_focal", "engine")


def time_train_step(size: str) -> dict:
    from configs import demo
    from dualfocus_jax.training import mesh as mesh_lib
    from dualfocus_jax.training.train_state import initial_train_state, learning_rate_schedule, make_optimizer
    from dualfocus_jax.training.train_step import make_train_step
    from dualfocus_jax.training.trainer import model_config_from

    config = demo.get_config()
    config.model.size = size
    model_config = model_config_from(config.model)
    optimizer = make_optimizer(config.optimizer, config.train.total_steps)
    mesh = mesh_lib.data_parallel_mesh()
    state = mesh_lib.replicated_on_mesh(initial_train_state(model_config, optimizer, jax.random.key(0)), mesh)
    rng = np.random.default_rng(0)
    b, s, c = FLAGS.batch, FLAGS.slices, FLAGS.crop
    batch = mesh_lib.global_batch_array({
        "stack": rng.uniform(size=(b, s, c, c, 3)).astype(np.float32),
        "focus": np.broadcast_to(np.linspace(1.0, 2.0, s, dtype=np.float32), (b, s)).copy(),
        "depth": rng.uniform(1.0, 2.0, (b, c, c)).astype(np.float32),
        "valid": np.ones((b, c, c), bool)}, mesh)
    step = make_train_step(model_config, optimizer, learning_rate_schedule(config.optimizer, 1000), mesh)
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)  # like the trainer, nothing is read back between steps
    elapsed = time.perf_counter() - start
    return {"size": size, "compile_s": compile_s, "steps_per_s": FLAGS.steps / elapsed,
            "examples_per_s": FLAGS.steps * b / elapsed}


def time_input_pipeline(source: str) -> float:
    from configs import demo, engine_small
    from dualfocus_jax.training.input_pipeline import training_iterator

    config = demo.get_config() if source == "synthetic_focal" else engine_small.get_config()
    config.input.update(batch_size=FLAGS.batch, crop_size=(FLAGS.crop, FLAGS.crop), num_slices=FLAGS.slices,
                        crop_sizes=(), slice_counts=())  # the train step's shape, so the rates compare
    if FLAGS.data_dir:
        config.input.data_dir = FLAGS.data_dir
    iterator = training_iterator(config.input, seed=0)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.input_batches):
        next(iterator)
    return FLAGS.input_batches * FLAGS.batch / (time.perf_counter() - start)


def main(argv):
    del argv
    print(f"devices: {jax.device_count()} × {jax.devices()[0].device_kind}; batch {FLAGS.batch}, "
          f"{FLAGS.slices} slices, {FLAGS.crop}×{FLAGS.crop} crops")
    unknown = sorted(set(FLAGS.sources) - set(SOURCES))
    if unknown:
        raise app.UsageError(f"--sources: unknown {unknown}; known: {', '.join(SOURCES)}")
    input_rates = {}
    for source in FLAGS.sources:
        input_rates[source] = time_input_pipeline(source)
        print(f"input pipeline alone, {source}: {input_rates[source]:.1f} examples/s", flush=True)
    ratios = " | ".join(f"input / train ({source})" for source in input_rates)
    print(f"| model | compile (s) | train steps/s | examples/s | {ratios} |")
    print("|---|---|---|---|" + "---|" * len(input_rates))
    for size in FLAGS.sizes:
        row = time_train_step(size)
        cells = " | ".join(f"{rate / row['examples_per_s']:.1f}×" for rate in input_rates.values())
        print(f"| {size} | {row['compile_s']:.1f} | {row['steps_per_s']:.2f} | {row['examples_per_s']:.1f} | "
              f"{cells} |", flush=True)


if __name__ == "__main__":
    app.run(main)
