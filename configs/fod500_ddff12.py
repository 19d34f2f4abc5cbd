"""FoD500 + DDFF-12 trained jointly: DFV's recipe (the setting of the paper's FoD500 and DDFF-12 rows).

Command (both datasets prepared under D, see configs/fod500.py and configs/ddff12.py):

    python -m experiments.train --config configs/fod500_ddff12.py --workdir runs/fod500_ddff12 \
        --config.input.data_dir=D

Hardware: one 80 GB GPU or a TPU v4-8; 196,000 updates (700 epochs of 5,669 stacks at batch 20), several
days on one A100-class GPU.
Recipe: Adam lr 1e-4, betas (0.9, 0.999), clip 0.5, batch 20, 224×224 crops (DDFF: ≥ 80 % valid GT), flips,
5 slices (DDFF: 5 of 10 at random, sorted); the two sets mixed in proportion to their sizes (400 : 5,269,
as a concatenated dataset would be), FoD500 depth and focus positions × 0.2 so both live on similar scales;
model selection on the DDFF-12 validation MSE. Evaluations: FoD500 test (DFV protocol, predictions divided
by 0.2 back to metres) and DDFF-12 validation (linspace(0, 9, 5) slices).
Target (paper, DualFocus): FoD500 MSE 0.015 / RMSE 0.112 / Bump 1.31; DDFF-12 MSE 4.7e-4 / RMSE 0.0194 /
δ1 0.800.
"""

from configs.common import apply_runlocal, dfv_recipe_config, eval_split, eval_suite, parse_arg, train_source

FOD500_DEPTH_SCALE = 0.2


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = dfv_recipe_config(arg.variant)
    config.input.sources.fod500 = train_source("fod500", "train", weight=400.0, depth_scale=FOD500_DEPTH_SCALE)
    config.input.sources.ddff12 = train_source("ddff12", "train", builder_config="official", weight=5269.0,
                                               slice_sampling="random_sorted", min_valid_fraction=0.8)
    config.train.update(total_steps=196_000, log_every_steps=200, validate_every_steps=2000)
    config.checkpoint.update(every_steps=2000, keep_latest=2, keep_best=1, best_metric="mse", best_mode="min")
    config.validation = eval_split("ddff12", "validation", "ddff12", builder_config="official", batch_size=8,
                                   num_panels=0)
    config.evals.update(eval_suite("fod500_test", "fod500", "test", "fod500", batch_size=4, num_panels=4,
                                   depth_scale=FOD500_DEPTH_SCALE, kinds=("network", "classical")))
    config.evals.update(eval_suite("ddff12_validation", "ddff12", "validation", "ddff12", builder_config="official",
                                   batch_size=8, num_panels=4, kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
