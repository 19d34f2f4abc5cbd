"""DualFocusNet on an accelerator (or any JAX backend): forward time and memory, and the training step.

    python -m benchmarks.bench_device                  # the full plan (meant for one GPU/TPU: minutes)
    python -m benchmarks.bench_device --quick          # tiny shapes, small model: checks the script on a CPU
    python -m benchmarks.bench_device --out DIR --commit abc1234   # also writes DIR/bench_device.{md,csv}

Needs only jax, flax, optax and numpy (what an accelerator image usually has), not the data pipeline.
Forward: B=1, jitted `train=False`, median over repeats after a warm-up call, every output kept. Training:
the trainer's own update step (`make_train_step`, on one device) with the paper's DFV recipe optimizer (Adam
1e-4, global-norm clip 0.5, constant rate) on batches of 20 float32 5×224×224 crops: the full loss, the state
donated, the step's metrics and guard values; median step time. Memory: XLA's own accounting of the compiled
program (arguments + outputs + temporaries − aliased buffers), i.e. the device memory that program needs, not
what the allocator happened to reserve. Cases run in order of importance and each row is printed (and appended
to the CSV) as soon as it is measured, so a run cut short still reports what it finished.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks.run_all import current_commit
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.model import DualFocusNet, initial_params, model_config, parameter_count
from dualfocus_jax.training import mesh as mesh_lib
from dualfocus_jax.training.train_state import initial_train_state, optimizer_and_schedule
from dualfocus_jax.training.train_step import make_train_step

# (size, variant, (S, H, W)) forward cases; "dualfocus" = both constraints on, "dfv" = both off.
FULL_FORWARD = [
    *[("paper", v, shape) for shape in [(5, 256, 256), (10, 384, 576), (10, 1024, 1024)]
      for v in ("dualfocus", "dfv")],
    *[("paper", v, (10, 384, 576)) for v in ("no_spatial", "no_focal")],
    *[("paper", "dualfocus", shape) for shape in [(10, 256, 256), (5, 384, 576), (5, 1024, 1024)]],
    *[("small", v, shape) for shape in [(5, 256, 256), (10, 384, 576), (10, 1024, 1024)]
      for v in ("dualfocus", "dfv")],
]
# (size, variant, batch, (S, H, W)) training-step cases.
FULL_TRAIN = [("paper", "dualfocus", 20, (5, 224, 224)), ("paper", "dfv", 20, (5, 224, 224)),
              ("small", "dualfocus", 20, (5, 224, 224))]
QUICK_FORWARD = [("small", "dualfocus", (3, 64, 64)), ("small", "dfv", (3, 64, 64))]
QUICK_TRAIN = [("small", "dualfocus", 2, (3, 64, 64))]
# The optimizer block of the DFV recipe (configs/common.py:dfv_recipe_config), written out so that this script
# needs no ml_collections or configs.
DFV_OPTIMIZER = types.SimpleNamespace(name="adam", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0, grad_clip_norm=0.5,
                                      schedule="constant", warmup_steps=0, final_lr_fraction=0.0)
COLUMNS = ["kind", "size", "variant", "batch", "S×H×W", "params (M)", "compile (s)", "time (ms)",
           "throughput", "program memory (MiB)"]

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_bool("quick", False, "tiny shapes, small model (checks the script)", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 10, "timed calls per case", flag_values=FLAGS)
flags.DEFINE_string("out", "", "folder for bench_device.md and bench_device.csv", flag_values=FLAGS)
flags.DEFINE_string("commit", "", "commit to name in the header (the device copy may lack git)", flag_values=FLAGS)
flags.DEFINE_bool("skip_train", False, "leave out the training-step cases", flag_values=FLAGS)
flags.DEFINE_integer("skip", 0, "leave out the first N cases of the plan (to finish a run that was cut short)",
                     flag_values=FLAGS)


def compiled_memory_mib(compiled) -> float:
    """Device bytes the compiled program needs (args + outputs + temporaries − aliased), in MiB; NaN if unknown."""
    stats = compiled.memory_analysis()
    if stats is None:
        return float("nan")
    total = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
             - stats.alias_size_in_bytes)
    return total / 2**20


def median_seconds(run, repeats: int) -> float:
    jax.block_until_ready(run())  # warm-up: first-run allocations and autotuning stay out of the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def example_inputs(batch: int, shape, seed: int = 0):
    slices, height, width = shape
    rng = np.random.default_rng(seed)
    stack = jnp.asarray(rng.random((batch, slices, height, width, 3), dtype=np.float32))
    focus = jnp.asarray(np.broadcast_to(np.linspace(0.5, 2.0, slices, dtype=np.float32), (batch, slices)).copy())
    depth = jnp.asarray(rng.uniform(0.5, 2.0, (batch, height, width)).astype(np.float32))
    return stack, focus, depth


def forward_case(size: str, variant: str, shape, repeats: int) -> dict:
    config = model_config(size, variant)
    model = DualFocusNet(config)
    params = initial_params(config, jax.random.key(0))
    stack, focus, _ = example_inputs(1, shape)
    forward = jax.jit(lambda p, x, f: model.apply(p, x, f, train=False))
    start = time.perf_counter()
    compiled = forward.lower(params, stack, focus).compile()
    compile_s = time.perf_counter() - start
    seconds = median_seconds(lambda: compiled(params, stack, focus), repeats)
    megapixels = shape[1] * shape[2] / 1e6
    return dict(kind="forward", size=size, variant=variant, batch=1, shape=shape, params=parameter_count(params),
                compile_s=compile_s, seconds=seconds, throughput=f"{megapixels / seconds:.2f} MP/s",
                memory_mib=compiled_memory_mib(compiled))


def train_case(size: str, variant: str, batch: int, shape, repeats: int) -> dict:
    config = model_config(size, variant)
    optimizer, schedule = optimizer_and_schedule(DFV_OPTIMIZER, total_steps=1)
    mesh = mesh_lib.data_parallel_mesh(jax.devices()[:1])
    state = mesh_lib.replicated_on_mesh(initial_train_state(config, optimizer, jax.random.key(0)), mesh)
    params = parameter_count(state.params)  # read before the first step donates the state
    stack, focus, depth = example_inputs(batch, shape)
    batch_arrays = mesh_lib.global_batch_array(
        {"stack": stack, "focus": focus, "depth": depth, "valid": np.ones(depth.shape, bool)}, mesh)
    step = make_train_step(config, optimizer, schedule, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], batch_arrays)
        return metrics["loss_total"]

    seconds = median_seconds(run, repeats)
    if not np.isfinite(float(run())):
        raise FloatingPointError(f"non-finite loss in the {size}/{variant} training step")
    return dict(kind="train step", size=size, variant=variant, batch=batch, shape=shape,
                params=params, compile_s=compile_s, seconds=seconds,
                throughput=f"{batch / seconds:.1f} stacks/s", memory_mib=compiled_memory_mib(compiled))


def table_row(result: dict) -> list[str]:
    return [result["kind"], result["size"], result["variant"], str(result["batch"]),
            "×".join(map(str, result["shape"])), f"{result['params'] / 1e6:.2f}", f"{result['compile_s']:.1f}",
            f"{result['seconds'] * 1e3:.1f}", result["throughput"], f"{result['memory_mib']:.0f}"]


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m benchmarks.bench_device", doc=__doc__)

    device = jax.devices()[0]
    header = (f"commit {FLAGS.commit or current_commit()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{jax.device_count()} × {device.device_kind} ({device.platform}), host {platform.machine()} "
              f"{os.cpu_count()} CPUs, jax {jax.__version__}{', quick run' if FLAGS.quick else ''}")
    lines = [f"<!-- {header}; `python -m benchmarks.bench_device` -->", "",
             f"# DualFocusNet on {device.device_kind}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    print("\n".join(lines), flush=True)
    csv_file = None
    if FLAGS.out:
        os.makedirs(FLAGS.out, exist_ok=True)
        csv_file = open(os.path.join(FLAGS.out, "bench_device.csv"), "w", newline="", encoding="utf-8")
        writer = csv.writer(csv_file)
        writer.writerow(COLUMNS)

    cases = [("train", c) for c in (QUICK_TRAIN if FLAGS.quick else FULL_TRAIN) if not FLAGS.skip_train]
    cases = cases[:1] + [("forward", c) for c in (QUICK_FORWARD if FLAGS.quick else FULL_FORWARD)] + cases[1:]
    for kind, case in cases[FLAGS.skip:]:
        try:
            result = (train_case(*case, repeats=FLAGS.repeats) if kind == "train"
                      else forward_case(*case, repeats=FLAGS.repeats))
        except Exception as error:  # one failing case (e.g. out of memory) must not lose the others
            message = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
            line = f"| {kind} | {' | '.join(map(str, case))} | failed: {message} |"
        else:
            row = table_row(result)
            line = "| " + " | ".join(row) + " |"
            if csv_file:
                writer.writerow(row)
                csv_file.flush()
        lines.append(line)
        print(line, flush=True)
    if csv_file:
        csv_file.close()
        with open(os.path.join(FLAGS.out, "bench_device.md"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
