"""Demo: the `small` DualFocus network trained on the embedded `synthetic_focal` data, on 2 CPU cores.

Command (prepares synthetic_focal into ~/tensorflow_datasets on first use, about 1–2 minutes):

    python -m experiments.train --config configs/demo.py --workdir runs/train_demo

Hardware: 2 CPU cores, under 2 GB of memory; about 5–10 minutes for 800 updates at batch 4 on 64×64
crops plus the evaluations (more when the cores are shared).
Data: 180 procedural training scenes (train[:180]), 20 held out for model selection (train[180:]); the
report is on the 40-scene test split (128×128, 5 slices, metres) beside the untrained network (same seed)
and the classical baseline (`estimate_depth_classical`, refined) on the same examples.
Expected result: the trained network beats the untrained one by a wide margin on every metric (the untrained
one predicts roughly the middle of the focus range); it need not beat the classical baseline after a few
minutes of CPU training. The measured numbers are in the training helper's report and `metrics.md`.
`configs/demo.py:runlocal` is a 4-step smoke run.
"""

from configs.common import apply_runlocal, base_config, eval_split, eval_suite, parse_arg, train_source


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = base_config()
    config.model.size = "small"
    config.model.variant = arg.variant
    config.input.prepare_if_missing = True
    config.input.batch_size = 4
    config.input.crop_size = (64, 64)
    config.input.num_slices = 5
    config.input.sources.synthetic_focal = train_source("synthetic_focal", "train[:180]")
    config.optimizer.update(name="adamw", lr=1e-3, weight_decay=1e-4, grad_clip_norm=1.0, schedule="warmup_cosine",
                            warmup_steps=50, final_lr_fraction=0.05)
    config.train.update(total_steps=800, log_every_steps=25, validate_every_steps=200)
    config.checkpoint.update(every_steps=200, keep_latest=2, keep_best=1, best_metric="rmse", best_mode="min")
    config.validation = eval_split("synthetic_focal", "train[180:]", "synthetic_focal", batch_size=4, num_panels=0)
    config.evals.update(eval_suite("test", "synthetic_focal", "test", "synthetic_focal", batch_size=4, num_panels=4,
                                   kinds=("untrained_network", "network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
