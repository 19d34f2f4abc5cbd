"""Scores of one method on the ablation's evaluation scenes, over all pixels, depth edges and fine texture.

Evaluation sets: the synthetic_focal test split (40 scenes, 128×128, 5 slices, scored on valid pixels as in
the trainer's report) and the motorcycle scene rendered with 5 slices (scored where the ground truth lies in
the focus range). Regions: `dualfocus_jax.evaluation.regions.region_masks` from the ground truth and the
all-in-focus image. Metrics: every metric of `dualfocus_jax.evaluation.metrics` per image, then the mean over images
(an image without pixels in a region does not count for it), plus AvgUnc over the region.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from configs.demo import get_config
from dualfocus_jax import data_features as F
from dualfocus_jax.classical import estimate_depth_classical
from dualfocus_jax.embedded_scenes import render_motorcycle_stack
from dualfocus_jax.evaluation.evaluate import mean_over_images, prediction_function
from dualfocus_jax.evaluation.regions import REGIONS, region_masks, region_metrics_per_image
from dualfocus_jax.model_inputs import evaluation_example, stacked_inputs
from dualfocus_jax.training.checkpointing import latest_saved_step, restore_params
from dualfocus_jax.training.trainer import model_config_from
from experiments.ablation_runs import variant_and_overrides
from experiments.data_setup import open_split_preparing

NUM_SLICES = 5
SYNTHETIC = "synthetic_focal test"
MOTORCYCLE = "motorcycle"
SCORES_FILE = "ablation_scores.json"
PREDICTIONS_FILE = "ablation_predictions.npz"


@dataclasses.dataclass
class EvalSet:
    """Same-size scenes: stack (N, S, H, W, 3) in [0, 1], focus (N, S), depth (N, H, W), masks region → (N, H, W)."""

    name: str
    stack: np.ndarray
    focus: np.ndarray
    depth: np.ndarray
    image: np.ndarray
    masks: dict[str, np.ndarray]


def _with_masks(name, stack, focus, depth, scored, image) -> EvalSet:
    per_scene = [region_masks(depth[i], scored[i], image[i], float(focus[i, -1] - focus[i, 0]))
                 for i in range(len(depth))]
    masks = {region: np.stack([m[region] for m in per_scene]) for region in REGIONS}
    return EvalSet(name, stack, focus, depth, image, masks)


def synthetic_test_set(data_dir: str | None = None) -> EvalSet:
    records = open_split_preparing("synthetic_focal", "test", data_dir=data_dir)
    examples = [records[i] for i in range(len(records))]
    inputs = [evaluation_example(record, NUM_SLICES, "all") for record in examples]
    stacked = stacked_inputs(inputs)
    image = np.stack([np.asarray(record[F.AIF], np.float32) / 255.0 for record in examples])
    return _with_masks(SYNTHETIC, stacked["stack"], stacked["focus"], stacked["depth"], stacked["valid"], image)


def motorcycle_set(downscale: int) -> EvalSet:
    rendered = render_motorcycle_stack(NUM_SLICES, downscale=downscale)
    return _with_masks(MOTORCYCLE, rendered.stack[None], rendered.focus_m[None], rendered.depth_m[None],
                       rendered.scored[None], rendered.image[None])


def region_scores(depth_NHW, uncertainty_NHW, eval_set: EvalSet) -> dict[str, dict[str, float]]:
    """region → metric → mean over the images that have pixels in the region."""
    scores = {}
    for region, per_image in region_metrics_per_image(depth_NHW, eval_set.depth, eval_set.masks).items():
        mask, counts = eval_set.masks[region], per_image.pop("pixels")
        per_image["avg_unc"] = np.where(counts > 0, (uncertainty_NHW * mask).reshape(len(mask), -1).sum(-1)
                                        / np.maximum(counts, 1), np.nan)
        scores[region] = mean_over_images(per_image)
        scores[region]["pixels"] = float(counts.sum())
    return scores


def network_predictions(params, model_config, eval_set: EvalSet, batch_size: int = 4):
    """(depth, uncertainty), each (N, H, W), of the network on every scene of the set."""
    predict = prediction_function(model_config)
    depths, sigmas = [], []
    for start in range(0, len(eval_set.stack), batch_size):
        stack, focus = eval_set.stack[start:start + batch_size], eval_set.focus[start:start + batch_size]
        real = len(stack)
        if real < batch_size and len(eval_set.stack) >= batch_size:  # one compiled shape per set
            stack = np.concatenate([stack, np.repeat(stack[-1:], batch_size - real, 0)])
            focus = np.concatenate([focus, np.repeat(focus[-1:], batch_size - real, 0)])
        outputs = jax.device_get(predict(params, stack, focus))
        depths.append(outputs["depth"][:real])
        sigmas.append(outputs["uncertainty"][:real])
    return np.concatenate(depths), np.concatenate(sigmas)


def classical_predictions(eval_set: EvalSet, refine: bool):
    results = [estimate_depth_classical(stack, focus, refine=refine)
               for stack, focus in zip(eval_set.stack, eval_set.focus)]
    return (np.stack([np.asarray(r.depth_HW) for r in results]),
            np.stack([np.asarray(r.uncertainty_HW) for r in results]))


def score_run(run_dir: str, name: str, eval_sets: list[EvalSet], keep_predictions: bool) -> dict:
    """Scores of a run's latest checkpoint (name: a variant or a key of experiments.ablation_runs.SENSITIVITY),
    cached in <run_dir>/ablation_scores.json (recomputed when the checkpoint step changes); with keep_predictions,
    its depth maps go to <run_dir>/ablation_predictions.npz."""
    step = latest_saved_step(run_dir)
    cache = os.path.join(run_dir, SCORES_FILE)
    predictions_path = os.path.join(run_dir, PREDICTIONS_FILE)
    if os.path.isfile(cache) and (os.path.isfile(predictions_path) or not keep_predictions):
        with open(cache, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("step") == step and set(cached["scores"]) == {s.name for s in eval_sets}:
            return cached["scores"]
    params, step = restore_params(run_dir, step)
    variant, overrides = variant_and_overrides(name)
    config = get_config(f"variant={variant}")
    config.model.update(overrides)
    model_config = model_config_from(config.model)
    scores, kept = {}, {}
    for eval_set in eval_sets:
        depth, sigma = network_predictions(params, model_config, eval_set)
        scores[eval_set.name] = region_scores(depth, sigma, eval_set)
        kept[eval_set.name] = depth
    with open(cache, "w", encoding="utf-8") as handle:
        json.dump({"step": int(step), "run": name, "scores": scores}, handle, indent=1)
    if keep_predictions:
        np.savez_compressed(predictions_path, **kept)
    return scores
