"""DDFF-12 alone (real Lytro focal stacks, disparity), DFV's recipe on the official 224×224 train/val crops.

Command (after `python -m experiments.prepare_data --dataset=ddff12 --config=official --manual_dir=<folder
with ddff-dataset-trainval.h5> --data_dir=D`):

    python -m experiments.train --config configs/ddff12.py --workdir runs/ddff12 --config.input.data_dir=D

Hardware: one 80 GB GPU or a TPU v4-8; 184,000 updates (700 epochs of 5,269 stacks at batch 20), several
days on one A100-class GPU (shorten with --config.train.total_steps).
Recipe: Adam lr 1e-4, clip 0.5, batch 20, 224×224 crops (the official crops are 224×224; a crop needs ≥ 80 %
valid ground truth), flips, 5 of the 10 slices drawn at random and kept in focus order; model selection on
the validation split's MSE (the best checkpoint is kept beside the latest). Evaluation: DDFF-12 protocol
on the validation split (slices linspace(0, 9, 5), GT > 0; the test split has no public ground truth).
Target (paper, DualFocus): MSE 4.7e-4, RMSE 0.0194, δ1 0.800 (HybridDepth: 5.1e-4 / 0.0200 / 0.789).
"""

from configs.common import apply_runlocal, dfv_recipe_config, eval_split, eval_suite, parse_arg, train_source


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = dfv_recipe_config(arg.variant)
    config.input.sources.ddff12 = train_source("ddff12", "train", builder_config="official",
                                               slice_sampling="random_sorted", min_valid_fraction=0.8)
    config.train.update(total_steps=184_000, log_every_steps=200, validate_every_steps=2000)
    config.checkpoint.update(every_steps=2000, keep_latest=2, keep_best=1, best_metric="mse", best_mode="min")
    config.validation = eval_split("ddff12", "validation", "ddff12", builder_config="official", batch_size=8,
                                   num_panels=0)
    config.evals.update(eval_suite("ddff12_validation", "ddff12", "validation", "ddff12", builder_config="official",
                                   batch_size=8, num_panels=4, kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
