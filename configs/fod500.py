"""FoD500 alone (DefocusNet's synthetic "fs_6"), DFV's recipe.

Command (after `python -m experiments.prepare_data --dataset=fod500 --manual_dir=<fs_6 parent> --data_dir=D`):

    python -m experiments.train --config configs/fod500.py --workdir runs/fod500 --config.input.data_dir=D

Hardware: one 80 GB GPU or a TPU v4-8 (batch 20 of 224×224 crops, 5 slices, paper-size model); 14,000
updates (700 epochs of 400 stacks), roughly a day on one A100-class GPU.
Recipe (docs/design/METHOD.md "Training recipes"): Adam lr 1e-4, betas (0.9, 0.999), batch 20, global-norm clip 0.5,
random 224×224 crops, horizontal and vertical flips, all 5 slices; no validation split (the last checkpoint
is evaluated). Evaluation: the 100 test scenes, DFV protocol (prediction and GT clipped to [0, 1.5] m).
Target (paper, DualFocus): MSE 0.015, RMSE 0.112, Bump 1.31 (DFV: 0.020 / 0.129 / 1.43).
"""

from configs.common import apply_runlocal, dfv_recipe_config, eval_suite, parse_arg, train_source


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = dfv_recipe_config(arg.variant)
    config.input.sources.fod500 = train_source("fod500", "train")
    config.train.update(total_steps=14_000, log_every_steps=100, validate_every_steps=1000)
    config.checkpoint.update(every_steps=1000, keep_latest=3, keep_best=0)
    config.evals.update(eval_suite("fod500_test", "fod500", "test", "fod500", batch_size=4, num_panels=4,
                                   kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
