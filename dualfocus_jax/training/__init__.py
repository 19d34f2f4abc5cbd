"""Training of DualFocusNet: input pipeline, data-parallel train step, checkpoints, and the loop that runs the
evaluators of `dualfocus_jax.evaluation`.

    from dualfocus_jax.training.trainer import train_and_evaluate
    train_and_evaluate(config, workdir, mode="train_and_eval")   # config: see configs/common.py

Modules (one concern each): augment (per-example augmentation), input_pipeline (tfds.data_source + grain),
mesh (device mesh and placement), train_state (state and optimizer), train_step (jitted update, NaN guard),
checkpointing (orbax), metric_log (JSON-lines and CSV logs), trainer (the loop).
"""
