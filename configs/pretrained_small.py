"""The synthetic-only model: the `small` DualFocus trained longer than the demo on the embedded `synthetic_focal` data.

Command (prepares synthetic_focal into ~/tensorflow_datasets on first use, about 1–2 minutes):

    python -m experiments.train --config configs/pretrained_small.py --workdir runs/pretrained_small
    python -m experiments.evaluate_pretrained --workdir runs/pretrained_small   # exports + evaluates

Hardware: 2 shared CPU cores, under 2 GB of memory. 5000 updates at batch 4 on 64×64 crops of 5 slices (metres,
~[0.5, 10]) took 14 minutes of wall time there (4-10 updates/s depending on the other load), plus ~1 minute
for the final evaluations; 25 minutes budgeted, the rest left for the motorcycle evaluation and export.
The exported parameters live in
`dualfocus_jax/pretrained/small_synthetic/` (the predictor's default until the engine-trained
`small_engine_stage5`, which generalises far better, replaced it; `--checkpoint` still takes it).
Same data split as `configs/demo.py`: train[:180] for training, train[180:] for model selection, the
40-scene test split for the report (beside the classical baseline and the untrained network).
`configs/pretrained_small.py:runlocal` is a 4-step smoke run.
"""

from configs.common import apply_runlocal, parse_arg
from configs.demo import get_config as demo_config


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, steps=5000)
    config = demo_config()
    # Longer cosine schedule than the demo; everything else (data, crops, optimiser) is the demo's.
    config.optimizer.update(warmup_steps=100)
    config.train.update(total_steps=arg.steps, log_every_steps=50, validate_every_steps=1000)
    config.checkpoint.update(every_steps=500, keep_latest=2, keep_best=1)
    if arg.runlocal:
        apply_runlocal(config)
    return config
