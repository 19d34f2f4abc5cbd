"""Trains and/or evaluates DualFocus from an experiment config.

    python -m experiments.train --config configs/demo.py --workdir runs/train_demo
    python -m experiments.train --config configs/fod500.py:runlocal --workdir /tmp/smoke
    python -m experiments.train --config configs/nyuv2.py --workdir runs/nyuv2 --config.optimizer.lr=3e-4
    python -m experiments.train --config configs/arkitscenes_zero_shot.py --workdir runs/nyuv2 --mode=eval

Re-running the same command resumes from the latest checkpoint in --workdir. Multi-host: pass
--multiprocess (on TPU/GPU clusters `jax.distributed.initialize()` discovers the rest), or give
--coordinator_address/--num_processes/--process_id explicitly (e.g. two CPU processes on localhost, which
use gloo collectives).
"""

from __future__ import annotations

import jax
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metric logs and evaluation reports.")
flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"], "What to run.")
flags.DEFINE_bool("multiprocess", False, "Call jax.distributed.initialize() (multi-host run).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies --multiprocess).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.multiprocess or FLAGS.coordinator_address:
        # CPU processes need a collectives backend for their all-reduces (gloo ships with jaxlib); the
        # setting only concerns the CPU backend, so GPU and TPU runs are unaffected.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    logging.info("JAX %s: process %d of %d, devices %s", jax.__version__, jax.process_index(), jax.process_count(),
                 jax.devices())
    from dualfocus_jax.training.trainer import train_and_evaluate

    train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.mode)


if __name__ == "__main__":
    app.run(main)
