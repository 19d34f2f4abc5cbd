"""Chooses the colour-guided cost upsampling's reach and colour scale on validation stacks, never a test split.

    python -m experiments.choose_cost_upsampling                       # the published table, about 10 min
    python -m experiments.choose_cost_upsampling --settings 1:0.05,4:0.05 --per_count 2    # a quick subset

`DualFocusConfig.cost_upsampling="joint_bilateral"` (`dualfocus_jax/model/guided_upsampling.py`) has two
settings, `guide_reach` (cells of the 1/4-resolution costs) and `guide_sigma` (colour scale). They are chosen
here, for one exported network (default: the fifth engine stage, which was trained with bilinear upsampling),
on stacks no test table uses:
1. engine draws of another seed than the engine's test split (`--per_count` per slice count 3/5/7/10/16,
   camera and scene families cycled as the test split cycles them), 128²;
2. the same scenes rendered again by the layered protocol renderer (the renderer of synthetic_focal and the
   motorcycle), stored as 8-bit;
3. synthetic_focal train[180:], the 20 scenes the training validates on (5 slices).
Each setting is scored on all scored pixels and on the depth-edge region (`dualfocus_jax.evaluation.regions`):
RMSE over the focus range and AbsRel, the mean over images. Writes choose_cost_upsampling.md into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
from absl import flags

from benchmarks.machine import cpu_model_name
from datasets.focal_engine.focal_engine_dataset_builder import TEST_SEED
from dualfocus_jax import data_features as F
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.compilation_cache import enable_compilation_cache
from dualfocus_jax.engine import CAMERA_FAMILIES, CATALOGUE, SCENE_FAMILIES, EngineSettings, draw_focal_stack
from dualfocus_jax.inference import CheckpointError, load_exported_checkpoint
from experiments.data_setup import open_split_preparing
from experiments.evaluate_generalisation import (
    Method,
    Scene,
    mean_over_images,
    protocol_rendered_stack,
    record_camera,
    score_scene,
)

DEFAULT_CHECKPOINT = "dualfocus_jax/pretrained/small_engine_stage5"
DEFAULT_SETTINGS = ("1:0.05", "1:0.1", "2:0.05", "2:0.1", "3:0.05", "4:0.05", "4:0.08", "6:0.05")
# Validation draws come from another seed than the engine's test split (datasets/focal_engine, TEST_SEED).
VALIDATION_SEED = 777
assert VALIDATION_SEED != TEST_SEED
SLICE_COUNTS = (3, 5, 7, 10, 16)
DATASETS = ("engine validation", "engine validation, layered protocol", "synthetic_focal train[180:]")

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_string("checkpoint", DEFAULT_CHECKPOINT, "exported checkpoint whose costs are upsampled",
                    flag_values=FLAGS)
flags.DEFINE_list("settings", list(DEFAULT_SETTINGS), "REACH:SIGMA pairs to score beside bilinear",
                  flag_values=FLAGS)
flags.DEFINE_integer("per_count", 6, "engine validation draws per slice count", flag_values=FLAGS)
flags.DEFINE_integer("synthetic_scenes", 20, "synthetic_focal validation scenes (at most 20)", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)",
                    flag_values=FLAGS)
flags.DEFINE_string("out", os.path.join("experiments", "results", "generalisation"), "folder for the table",
                    flag_values=FLAGS)


def parse_setting(text: str) -> tuple[int, float]:
    """(reach, sigma) from "REACH:SIGMA"; ValueError naming the form otherwise."""
    reach, _, sigma = text.partition(":")
    try:
        value = (int(reach), float(sigma))
    except ValueError:
        value = None
    if value is None or value[0] < 1 or not value[1] > 0:
        raise ValueError(f"--settings takes REACH:SIGMA pairs with REACH >= 1 and SIGMA > 0 (e.g. 4:0.05), "
                         f"got {text!r}.")
    return value


def engine_validation_scenes(per_count: int):
    """Engine draws of VALIDATION_SEED, and the same scenes rendered by the layered protocol renderer."""
    for count in SLICE_COUNTS:
        for index in range(per_count):
            family = CAMERA_FAMILIES[index % len(CAMERA_FAMILIES)]
            scene_family = SCENE_FAMILIES[(index // len(CAMERA_FAMILIES) + index) % len(SCENE_FAMILIES)]
            settings = EngineSettings(cameras=tuple(model.name for model in CATALOGUE if model.family == family))
            drawn = draw_focal_stack(np.random.default_rng([VALIDATION_SEED, count, index]), settings,
                                     num_slices=count, size=(128, 128), family=scene_family)
            aif = drawn[F.AIF].astype(np.float32) / 255.0
            focus = np.asarray(drawn[F.FOCUS_POSITIONS], np.float64)
            groups = {"slices": count}
            example = f"{count:02d}_{index}"
            yield Scene(DATASETS[0], example, drawn[F.STACK].astype(np.float32) / 255.0, focus, drawn[F.DEPTH],
                        drawn[F.VALID], aif, groups)
            protocol = protocol_rendered_stack(aif, drawn[F.DEPTH], focus, record_camera(drawn["meta"]), "layered")
            yield Scene(DATASETS[1], example, protocol, focus, drawn[F.DEPTH], drawn[F.VALID], aif, groups)


def synthetic_validation_scenes(limit: int, data_dir: str | None):
    if limit <= 0:
        return
    source = open_split_preparing("synthetic_focal", "train[180:]", data_dir=data_dir)
    for index in range(min(limit, len(source))):
        record = source[index]
        yield Scene(DATASETS[2], record["id"].decode(), record["stack"].astype(np.float32) / 255.0,
                    np.asarray(record["focus_positions"], np.float64), record["depth"], record["valid"],
                    record["aif"], {"slices": 5})


def report(records, names: list[str], header: str) -> str:
    lines = [header, ""]
    for region, title in (("all", "all scored pixels"), ("depth_edges", "depth-edge region")):
        lines += [f"## RMSE / focus range and AbsRel, {title}", "",
                  "| upsampling | " + " | ".join(DATASETS) + " |", "|---" * (len(DATASETS) + 1) + "|"]
        best = {d: min(mean_over_images(records, dataset=d, method=n, region=region)["rmse_range"] for n in names)
                for d in DATASETS}
        for name in names:
            cells = []
            for dataset in DATASETS:
                means = mean_over_images(records, dataset=dataset, method=name, region=region)
                cell = f"{means['rmse_range']:.4f} / {means['abs_rel']:.4f}"
                cells.append(f"**{cell}**" if means["rmse_range"] == best[dataset] else cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m experiments.choose_cost_upsampling", doc=__doc__)
    command = "python -m experiments.choose_cost_upsampling " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        settings = [parse_setting(text) for text in FLAGS.settings]
        params, config = load_exported_checkpoint(FLAGS.checkpoint)
    except (ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    enable_compilation_cache()
    started = time.perf_counter()
    methods = [Method("bilinear", "network", params, dataclasses.replace(config, cost_upsampling="bilinear"))]
    methods += [Method(f"joint bilateral, reach {reach}, sigma {sigma:g}", "network", params,
                       dataclasses.replace(config, cost_upsampling="joint_bilateral", guide_reach=reach,
                                           guide_sigma=sigma)) for reach, sigma in settings]
    records = []
    scenes = [*engine_validation_scenes(FLAGS.per_count),
              *synthetic_validation_scenes(FLAGS.synthetic_scenes, FLAGS.data_dir)]
    for number, scene in enumerate(scenes, start=1):
        records += score_scene(scene, methods)
        if number % 10 == 0 or number == len(scenes):
            print(f"{number}/{len(scenes)} stacks [{(time.perf_counter() - started) / 60:.1f} min]", flush=True)
    header = (f"# Choosing the colour-guided cost upsampling on validation stacks\n\n"
              f"Network: `{FLAGS.checkpoint}`. Engine validation: {FLAGS.per_count} draws per slice count "
              f"({', '.join(map(str, SLICE_COUNTS))}) of seed {VALIDATION_SEED}, 128². Bold: the lowest RMSE / "
              f"focus range per column.\n\nCommand: `{command.strip()}` ({cpu_model_name()}, {os.cpu_count()} CPUs, "
              f"{(time.perf_counter() - started) / 60:.1f} min).")
    text = report(records, [method.name for method in methods], header)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "choose_cost_upsampling.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
