"""Exports a training workdir's model to a folder you name, and evaluates it beside the classical baseline.

    python -m experiments.evaluate_pretrained --workdir runs/my_run --out runs/my_run/export --export_only
    python -m experiments.evaluate_pretrained --workdir runs/my_run --out runs/my_run/export
    python -m dualfocus_jax.predict --stack S --out O --checkpoint runs/my_run/export    # predicts with it

Maintainers regenerate the model shipped with the package (and its results page) with

    python -m experiments.train --config configs/engine_small.py:stage=15 --workdir runs/engine_small_stage15
    python -m experiments.evaluate_pretrained --workdir runs/engine_small_stage15 --replace_shipped

(the fifteenth stage starts from the fourteenth's export in dualfocus_jax/pretrained/; configs/engine_small.py gives
the commands of every stage). --replace_shipped exports with the colour-guided upsampling of the finest costs
(`SHIPPED_COST_UPSAMPLING`); the stage trained with bilinear upsampling.

1. Exports the latest checkpoint's parameters + model config (the one the run recorded in
   <workdir>/model.json, else the one its recorded <workdir>/config.json builds; only for older workdirs that
   recorded neither, the one --config builds) to --out (`save_exported_checkpoint`).
   The export is written beside the folder and renamed into place when complete. Nothing is written into
   the shipped model `dualfocus_jax/pretrained/small_engine_stage15/` or `experiments/results/pretrained_small.md`
   unless --replace_shipped says so. --noexport evaluates what is already in the folder.
2. Renders the Middlebury motorcycle scene the way experiments/classical_demo.py does (layered thin lens,
   NYUv2 camera, focus positions evenly over the valid depth range), at --downscale, for 5 and 10 slices;
   predicts with the exported network and with the classical baseline on the
   same stacks; scores where the ground truth lies inside the focus range.
3. Copies the tables the trainer wrote for the run's evaluations (<workdir>/eval/<name>/metrics.md, one per
   entry of the recorded config's `evals`; `test` for older workdirs).
Writes <out>/evaluation.md (experiments/results/pretrained_small.md with --replace_shipped).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import sys
import time

import jax.numpy as jnp
from absl import flags

from configs.recorded import RUN_CONFIG, recorded_config
from dualfocus_jax.command_flags import parse_flags, usage_error
from dualfocus_jax.embedded_scenes import render_motorcycle_stack
from dualfocus_jax.evaluation import metrics as dff_metrics
from dualfocus_jax.evaluation.evaluators import build_evaluators
from dualfocus_jax.evaluation.reports import metrics_markdown, rows_from_arrays
from dualfocus_jax.inference import (
    DEFAULT_CHECKPOINT,
    load_exported_checkpoint,
    predict_depth,
    save_exported_checkpoint,
)
from dualfocus_jax.model import DualFocusConfig
from dualfocus_jax.model.config import COST_UPSAMPLINGS
from dualfocus_jax.training.checkpointing import CheckpointError, latest_saved_step, restore_params
from dualfocus_jax.training.trainer import RUN_MODEL, model_config_from

RESULTS = os.path.join("experiments", "results", "pretrained_small.md")
# The recipe of the shipped model: --replace_shipped falls back to it for a workdir that recorded no config.
SHIPPED_CONFIG = "configs/engine_small.py:stage=15"
# The shipped model upsamples its finest costs guided by colour (chosen on validation stacks, for the fifth
# stage, by experiments/choose_cost_upsampling.py); the run itself trained with bilinear upsampling.
SHIPPED_COST_UPSAMPLING = "joint_bilateral"
REPORT = "evaluation.md"
SHIPPED_LABEL = f"dualfocus_jax/pretrained/{os.path.basename(DEFAULT_CHECKPOINT)}/"
SHIPPED_NOTES = (
    "- Trained on the focal-stack engine (phone, DSLR and dataset cameras; 3, 5, 7, 10 and 16 slices spaced in "
    "distance, diopters or irregularly) and on the embedded synthetic_focal scenes; "
    "experiments/results/generalisation/ scores it on the engine's test split, synthetic_focal, the "
    "motorcycle and the real phone stacks beside the classical baseline and the synthetic-only model.",
    "- The network never sees focus values, so other units only change the expectation and, for a model "
    "with a slice prior, the slices' weights (see dualfocus_jax/inference/focus_units.py).",
    "- The synthetic_focal table is the trainer's own report, made with the cost upsampling the run trained with; "
    "the motorcycle rows and experiments/results/generalisation/ score the exported model.",
)
EXPORT_NOTES = (
    "- Compare the 5- and 10-slice rows above before trusting the network on stack lengths it was not trained "
    "on (`--method=classical` is the fallback of the prediction command).",
    "- The network never sees focus values, so other units only change the expectation and, for a model "
    "with a slice prior, the slices' weights (see dualfocus_jax/inference/focus_units.py).",
)

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_string("workdir", "runs/pretrained_small", "training workdir to export", flag_values=FLAGS)
flags.DEFINE_string("out", None, "folder to export the model to (and write evaluation.md into)", flag_values=FLAGS)
flags.DEFINE_bool("replace_shipped", False, f"export to the shipped model {SHIPPED_LABEL} and rewrite {RESULTS} "
                  "(maintainers)", flag_values=FLAGS)
flags.DEFINE_string("config", None, "config file of the run (path.py[:arg]), only for older workdirs that recorded "
                    f"no config.json or model.json ({SHIPPED_CONFIG} with --replace_shipped)", flag_values=FLAGS)
flags.DEFINE_bool("export", True, "export the workdir's latest checkpoint; --noexport: evaluate the export already "
                  "in the folder", flag_values=FLAGS)
flags.DEFINE_bool("export_only", False, "export without evaluating", flag_values=FLAGS)
flags.DEFINE_integer("downscale", 2, "downscale of the rendered motorcycle scene", flag_values=FLAGS)
flags.DEFINE_enum("cost_upsampling", None, list(COST_UPSAMPLINGS), "export with this upsampling of the finest costs "
                  "(DualFocusConfig.cost_upsampling, no parameters of its own) instead of the run's; the shipped "
                  f"model: {SHIPPED_COST_UPSAMPLING}", flag_values=FLAGS)


def motorcycle_rows(params, config, *, num_slices: int, downscale: int, name: str = "shipped") -> dict:
    rendered = render_motorcycle_stack(num_slices, downscale=downscale)
    stack, focus, depth_gt, mask = rendered.stack, rendered.focus_m, rendered.depth_m, rendered.scored
    rows = {}
    for label, method in ((f"dualfocus {config.size} ({name}), {num_slices} slices", "network"),
                          (f"classical + refinement, {num_slices} slices", "classical")):
        started = time.perf_counter()
        prediction = predict_depth(stack, focus, method=method, params=params, config=config)
        values = dff_metrics.depth_metrics(jnp.asarray(prediction.depth_HW)[None], jnp.asarray(depth_gt)[None],
                                           jnp.asarray(mask)[None])
        rows[label] = dict(values)
        print(f"motorcycle {num_slices} slices, {method}: {time.perf_counter() - started:.1f} s", flush=True)
    return rows_from_arrays(rows), depth_gt.shape, focus


def load_config_file(spec: str):
    """`get_config(arg)` of a config file given as `path.py[:arg]` (as the training launcher takes it)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"--config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("exported_run_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def run_config(workdir: str, config_spec: str | None):
    """(experiment ConfigDict, where it came from): the config the run recorded (<workdir>/config.json), or for
    older workdirs the one --config builds; (None, None) when there is neither."""
    if os.path.isfile(os.path.join(workdir, RUN_CONFIG)):
        return recorded_config(workdir), os.path.join(workdir, RUN_CONFIG)
    if config_spec:
        return load_config_file(config_spec), config_spec
    return None, None


def run_model_config(workdir: str, config_spec: str | None):
    """(DualFocusConfig, where it came from): the model config the run recorded (<workdir>/model.json, written
    by the trainer), else the one its recorded config.json builds, else (older workdirs) the one the --config
    file builds."""
    recorded = os.path.join(workdir, RUN_MODEL)
    if os.path.isfile(recorded):
        with open(recorded, encoding="utf-8") as handle:
            return DualFocusConfig.from_config_dict(json.load(handle)["model_config"]), recorded
    config, source = run_config(workdir, config_spec)
    if config is None:
        raise ValueError(f"{os.path.abspath(workdir)} records no config (no config.json or model.json); pass the "
                         "--config the run was trained with, e.g. --config configs/pretrained_small.py.")
    return model_config_from(config.model), source


def evaluation_tables(workdir: str, config_spec: str | None) -> list[tuple[str, str]]:
    """(name, path of <workdir>/eval/<name>/metrics.md) of each evaluation report of the run's config (`test`
    when no config is known)."""
    config, _ = run_config(workdir, config_spec)
    evaluators = build_evaluators(config.evals) if config is not None and config.get("evals") else []
    names = list(dict.fromkeys(evaluator.report for evaluator in evaluators)) or ["test"]
    return [(name, os.path.join(workdir, "eval", name, "metrics.md")) for name in names]


def run_sources(workdir: str) -> str:
    """The training data of a run in words, from its recorded config (<workdir>/config.json)."""
    path = os.path.join(workdir, RUN_CONFIG)
    if not os.path.isfile(path):
        return "(not recorded in the workdir)"
    with open(path, encoding="utf-8") as handle:
        sources = json.load(handle).get("input", {}).get("sources", {})
    return "; ".join(f"{source.get('dataset')} {source.get('split')}".strip() for source in sources.values())


def check_destination(out: str, shipped: str, replace_shipped: bool, noexport: bool) -> None:
    """ValueError (before any work) for a destination that would lose something: the shipped model without
    --replace_shipped, or a non-empty folder that is not an earlier export."""
    out, shipped = os.path.abspath(out), os.path.abspath(shipped)
    if not replace_shipped and (out == shipped or out.startswith(shipped + os.sep)):
        raise ValueError(f"--out {out} is the model shipped with the package; pass --replace_shipped (instead of "
                         "--out) to replace it on purpose, or name another folder.")
    if noexport:
        if not os.path.isfile(os.path.join(out, "model_config.json")):
            raise ValueError(f"--noexport evaluates an existing export, but {out} holds none (no model_config.json).")
        return
    if os.path.isfile(out):
        raise ValueError(f"--out {out} is a file; name a folder to export to.")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, "model_config.json")):
        raise ValueError(f"--out {out} is not empty and holds no earlier export (no model_config.json); name a new "
                         "or empty folder so nothing in it is overwritten.")


def export(workdir: str, out: str, config_spec: str | None, command: str, cost_upsampling: str | None = None) -> int:
    """Writes the export into a sibling temporary folder and renames it into place (an earlier export there is
    replaced only once the new one is complete). Returns the exported step. `cost_upsampling` replaces the run's
    (an inference setting without parameters)."""
    params, step = restore_params(workdir)
    model_config, source = run_model_config(workdir, config_spec)
    if cost_upsampling:
        model_config = dataclasses.replace(model_config, cost_upsampling=cost_upsampling)
    provenance = {"trained_by": (f"python -m experiments.train --config {config_spec} --workdir {workdir}"
                                 if source == config_spec else f"the run in {workdir} (resolved config: "
                                 f"{os.path.join(workdir, 'config.json')})"),
                  "workdir": os.path.abspath(workdir), "step": int(step), "data": run_sources(workdir),
                  "model_config_from": source, "exported_by": command}
    variables = params if "params" in params else {"params": params}  # restore_params gives {'params': ...}
    out = os.path.abspath(out)
    staging, previous = f"{out}.exporting-{os.getpid()}", f"{out}.replaced-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_exported_checkpoint(staging, variables, model_config, provenance=provenance)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.isdir(out):
        os.rename(out, previous)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    os.rename(staging, out)
    shutil.rmtree(previous, ignore_errors=True)
    return int(step)


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m experiments.evaluate_pretrained", doc=__doc__)
    command = "python -m experiments.evaluate_pretrained " + " ".join(argv if argv is not None else sys.argv[1:])

    if bool(FLAGS.out) == bool(FLAGS.replace_shipped):
        usage_error(f"name the folder to export to with --out FOLDER (replacing the shipped model {SHIPPED_LABEL} "
                    f"and {RESULTS} needs --replace_shipped instead)." if not FLAGS.out else
                    "pass either --out FOLDER or --replace_shipped, not both.")
    out = DEFAULT_CHECKPOINT if FLAGS.replace_shipped else os.path.abspath(FLAGS.out)
    config_spec = FLAGS.config or (SHIPPED_CONFIG if FLAGS.replace_shipped else None)
    try:
        check_destination(out, DEFAULT_CHECKPOINT, FLAGS.replace_shipped, not FLAGS.export)
        if FLAGS.export:
            if latest_saved_step(FLAGS.workdir) is None:
                raise ValueError(f"no checkpoint in {os.path.join(os.path.abspath(FLAGS.workdir), 'checkpoints')}; "
                                 "train first, or point --workdir at a training workdir.")
            cost_upsampling = FLAGS.cost_upsampling or (SHIPPED_COST_UPSAMPLING if FLAGS.replace_shipped else None)
            step = export(FLAGS.workdir, out, config_spec, command, cost_upsampling)
            print(f"exported step {step} of {os.path.abspath(FLAGS.workdir)} to {out}", flush=True)
        params, model_config = load_exported_checkpoint(out)
    except (ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if FLAGS.export_only:
        print(f"predict with it: python -m dualfocus_jax.predict --stack FOLDER --out FOLDER --checkpoint {out}",
              flush=True)
        return 0
    with open(os.path.join(out, "model_config.json"), encoding="utf-8") as handle:
        provenance = json.load(handle)["provenance"]
    size_mb = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(out)
                  for name in names) / 1e6

    sections = []
    for num_slices in (5, 10):
        rows, shape, focus = motorcycle_rows(params, model_config, num_slices=num_slices, downscale=FLAGS.downscale,
                                             name="shipped" if FLAGS.replace_shipped else "exported")
        network, classical = (values["rmse"] for values in rows.values())
        verdict = (f"The network's RMSE is {network / classical:.2f}x the classical baseline's "
                   f"({'better' if network < classical else 'worse'}).")
        sections.append(f"### Motorcycle (Middlebury), {num_slices} slices, {shape[1]}x{shape[0]} px\n\n"
                        f"Focus positions (m): {', '.join(f'{f:.2f}' for f in focus)}.\n\n"
                        f"{metrics_markdown(rows)}\n\n{verdict}\n")
    tables = []
    for name, table in evaluation_tables(FLAGS.workdir, config_spec):
        if FLAGS.replace_shipped and name != "test":  # the results page shows the synthetic_focal test split
            continue
        text = (open(table, encoding="utf-8").read().strip() if os.path.isfile(table)
                else f"(no {table}: run the training command first)")
        tables.append(text if FLAGS.replace_shipped else f"### {name}\n\n{text}\n")
    synthetic = "\n\n".join(tables)
    title = ("# The shipped model: small DualFocus trained on the focal-stack engine and synthetic_focal"
             if FLAGS.replace_shipped else
             f"# Exported model: DualFocus {model_config.size}/{model_config.variant}")
    label = SHIPPED_LABEL if FLAGS.replace_shipped else out
    text = "\n".join([
        title,
        "",
        f"Checkpoint: `{label}` ({size_mb:.1f} MB), step {provenance.get('step')}, "
        f"trained by `{provenance.get('trained_by')}`.",
        f"Written by `{command.strip()}` on {platform.machine()} CPU ({os.cpu_count()} cores, shared), "
        "JAX CPU backend.",
        "Depth metrics in metres (rmse, mae lower is better; delta1..3 higher is better), masked to ground truth "
        "inside the focus range. Lower rows use the same inputs as the network row.",
        "",
        ("## synthetic_focal test split (40 scenes, 128x128, 5 slices)" if FLAGS.replace_shipped else
         "## Evaluations of the training run"),
        "",
        "From the trainer's reports (`<workdir>/eval/<name>/metrics.md`):",
        "",
        synthetic,
        "",
        "## Motorcycle scene rendered as in experiments/classical_demo.py",
        "",
        *sections,
        "## Notes",
        "",
        *(SHIPPED_NOTES if FLAGS.replace_shipped else EXPORT_NOTES),
    ])
    report = RESULTS if FLAGS.replace_shipped else os.path.join(out, REPORT)
    os.makedirs(os.path.dirname(report), exist_ok=True)
    with open(report + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(report + ".tmp", report)
    print(text)
    print(f"wrote {report}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
