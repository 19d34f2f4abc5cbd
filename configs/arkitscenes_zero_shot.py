"""ARKitScenes zero-shot: the NYUv2-trained network (configs/nyuv2.py) evaluated on ARKitScenes stacks.

Command (after training runs/nyuv2 and `python -m experiments.prepare_data --dataset=arkitscenes_focal
--manual_dir=<ARKitScenes upsampling> --data_dir=D`):

    python -m experiments.train --config configs/arkitscenes_zero_shot.py --workdir runs/nyuv2 --mode=eval \
        --config.input.data_dir=D

It reads the latest checkpoint of --workdir and only evaluates (no ARKitScenes image is trained on); with
--mode=train_and_eval it trains the NYUv2 recipe first, identical to configs/nyuv2.py.
Hardware: one GPU or TPU host; about 2,906 frames of 480×640, 5 slices, minutes.
Protocol: rendered with F = 2.9 mm, f/0.5, 5 slices at linspace(min, max) of each frame's depth; mask
depth ≠ 0; metres.
Target (paper, DualFocus): RMSE 0.28, AbsRel 0.40 (HybridDepth: 0.29 / 0.42).
"""

from configs import nyuv2
from configs.common import ConfigDict, apply_runlocal, eval_suite, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, variant="dualfocus")
    config = nyuv2.get_config(f"variant={arg.variant}")
    config.evals = ConfigDict()
    config.evals.update(eval_suite("arkitscenes_test", "arkitscenes_focal", "test", "arkitscenes", batch_size=4,
                                   num_panels=4, kinds=("network", "classical")))
    if arg.runlocal:
        apply_runlocal(config)
    return config
