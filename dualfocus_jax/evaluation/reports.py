"""Metrics tables for people and programs (Markdown, CSV and JSON from rows of named metrics) and the report
folder of one evaluation (tables, per-image CSV, panels)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping

from dualfocus_jax.evaluation.evaluate import EvaluationResult
from dualfocus_jax.evaluation.panels import save_example_panel

# Column order and number formats of the literature's tables.
_COLUMN_FORMATS = {
    "mse": ".3e", "rmse": ".4f", "log_rmse": ".4f", "abs_rel": ".4f", "sq_rel": ".3e", "mae": ".4f",
    "delta1": ".4f", "delta2": ".4f", "delta3": ".4f", "bump": ".3f", "avg_unc": ".4f",
}


def metrics_markdown(rows: Mapping[str, Mapping[str, float]], *, row_label: str = "method") -> str:
    """A Markdown table: one row per method, one column per metric (in the literature's order)."""
    columns = _ordered_columns(rows)
    lines = [f"| {row_label} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = [_format(column, values.get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_metrics_tables(folder: str | os.PathLike, rows: Mapping[str, Mapping[str, float]],
                         *, stem: str = "metrics", extra: Mapping | None = None) -> list[str]:
    """Writes `<stem>.json`, `<stem>.csv` and `<stem>.md` into `folder`; returns their paths.

    `extra` (e.g. the scene, the camera, the command) goes into the JSON beside the rows.
    """
    os.makedirs(folder, exist_ok=True)
    columns = _ordered_columns(rows)
    json_path = os.path.join(folder, f"{stem}.json")
    with open(json_path, "w", encoding="utf-8") as handle:
        json.dump({"metrics": {k: {c: float(v) for c, v in r.items()} for k, r in rows.items()},
                   **(dict(extra) if extra else {})}, handle, indent=2)
    csv_path = os.path.join(folder, f"{stem}.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", *columns])
        for name, values in rows.items():
            writer.writerow([name, *(repr(float(values[c])) if c in values else "" for c in columns)])
    md_path = os.path.join(folder, f"{stem}.md")
    with open(md_path, "w", encoding="utf-8") as handle:
        handle.write(metrics_markdown(rows) + "\n")
    return [json_path, csv_path, md_path]


def _ordered_columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    present: list[str] = []
    for values in rows.values():
        present.extend(c for c in values if c not in present)
    known = [c for c in _COLUMN_FORMATS if c in present]
    return known + [c for c in present if c not in _COLUMN_FORMATS]


def _format(column: str, value) -> str:
    if value is None:
        return "–"
    return format(float(value), _COLUMN_FORMATS.get(column, ".4g"))


def rows_from_arrays(rows: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Converts metric values that are 0-d arrays (numpy or jax) into plain floats."""
    return {name: {k: float(v) for k, v in values.items()} for name, values in rows.items()}


def write_evaluation_report(folder: str, name: str, evaluation, outcome: EvaluationResult, rows: dict,
                            step: int, *, say: Callable[[str], None] = print) -> list[str]:
    """metrics.{json,csv,md} (one row per method), per_image.csv and the PNG panels of one evaluation."""
    os.makedirs(folder, exist_ok=True)
    extra = {"evaluation": name, "dataset": evaluation.dataset, "split": evaluation.split,
             "protocol": evaluation.protocol, "step": step, "num_examples": len(outcome.ids)}
    written = write_metrics_tables(folder, rows, extra=extra)
    per_image_path = os.path.join(folder, "per_image.csv")
    names = sorted(outcome.per_image)
    with open(per_image_path, "w", encoding="utf-8") as handle:
        handle.write(",".join(["id", *names]) + "\n")
        for index, example_id in enumerate(outcome.ids):
            handle.write(",".join([example_id, *(repr(float(outcome.per_image[n][index])) for n in names)]) + "\n")
    written.append(per_image_path)
    unit = "disparity" if evaluation.protocol == "ddff12" else "m"
    for index, example in enumerate(outcome.examples):
        written.append(save_example_panel(os.path.join(folder, f"panel_{index:02d}.png"), example, unit=unit,
                                          title=f"{name} {example.example_id} (step {step})"))
    say(f"== wrote {len(written)} files to {folder}")
    say("\n" + metrics_markdown(rows) + "\n")
    return written
