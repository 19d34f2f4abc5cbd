"""NYU Depth v2 with synthetic focal stacks (thin-lens, 5 slices), HybridDepth's recipe.

Command (after `python -m experiments.prepare_data --dataset=nyuv2_focal --config=5_slices --manual_dir=<NYU
files> --data_dir=D`):

    python -m experiments.train --config configs/nyuv2.py --workdir runs/nyuv2 --config.input.data_dir=D

Hardware: one 80 GB GPU or a TPU v4-8 (batch 24 of full 384×512 stacks, paper-size model); 60,000 updates,
about 1–2 days on one A100-class GPU.
Recipe (docs/design/METHOD.md "Training recipes"): AdamW lr 3e-4, weight decay 1e-3, batch 24, 60k steps (cosine decay),
clip 0.5, full 384×512 images with flips, all 5 slices; 2 % of the training list held out for model
selection (RMSE). Evaluation: the 654 test images, mask 1e-3 < GT < 10 m.
Target (paper, DualFocus): RMSE 0.075, AbsRel 0.013, δ1 0.999 (DFV: 0.094 / 0.020 / 0.998).
The same checkpoint is evaluated zero-shot on ARKitScenes by configs/arkitscenes_zero_shot.py.
"""

from configs.common import apply_runlocal, base_config, eval_split, eval_suite, parse_arg, train_source


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = base_config()
    config.model.update(size="paper", variant=arg.variant)
    config.input.update(batch_size=24, crop_size=(384, 512), num_slices=5, num_threads=16, prefetch=4)
    config.input.sources.nyuv2 = train_source("nyuv2_focal", "train[:98%]", builder_config="5_slices")
    config.optimizer.update(name="adamw", lr=3e-4, weight_decay=1e-3, grad_clip_norm=0.5, schedule="cosine",
                            final_lr_fraction=0.0)
    config.train.update(total_steps=60_000, log_every_steps=100, validate_every_steps=2000)
    config.checkpoint.update(every_steps=2000, keep_latest=2, keep_best=1, best_metric="rmse", best_mode="min")
    config.validation = eval_split("nyuv2_focal", "train[98%:]", "nyuv2", builder_config="5_slices", batch_size=8,
                                   num_panels=0)
    config.evals.update(eval_suite("nyuv2_test", "nyuv2_focal", "test", "nyuv2", builder_config="5_slices",
                                   batch_size=8, num_panels=4, kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
