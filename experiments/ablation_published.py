"""Reusing a published ablation report when its runs' checkpoints are gone.

The sweep's checkpoints live in the workdir (runs/ablation_engine/, not in git); its results (ablation_engine.md,
per_seed.csv) are committed. On a fresh clone, or after the workdir is cleaned, a new run (a sensitivity setting,
another seed) can still be reported beside the published sweep: the per-seed rows of every (method, seed) that is
not scored now are taken from the published per_seed.csv, once the classical baseline, scored again, shows that the
evaluation is the same; the two sections that need the runs' own files (their per-image scores, their training
logs) are carried from the published report for the methods that are missing. Without this the report phase would
overwrite the published tables with the few runs present.
"""

from __future__ import annotations

import csv
import os

import numpy as np

# metric values in per_seed.csv carry 6 significant digits
SAME_VALUE_RTOL = 2e-5


def read_per_seed_csv(path: str, metrics: tuple[str, ...]) -> list[dict]:
    """The rows of a per_seed.csv written by experiments.ablation_engine.write_per_seed_csv (typed as there: seed
    int or None, images int, metrics float, group an int where it is one (the slice counts) or else str); [] when
    there is no such file."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append({**row, "seed": int(row["seed"]) if row["seed"] else None, "images": int(row["images"]),
                             "group": int(row["group"]) if row["group"].isdigit() else row["group"],
                             **{m: float(row[m]) for m in metrics}})
            except (KeyError, ValueError) as error:
                raise SystemExit(f"{path} is not a per_seed.csv of this report ({error}); move it away or pass "
                                 "--results=<another folder>.") from None
    return rows


def runs_of(rows: list[dict]) -> set[tuple[str, int]]:
    """The (method, seed) pairs of the networks among the rows (the classical baseline has no seed)."""
    return {(row["method"], row["seed"]) for row in rows if row["seed"] is not None}


def check_same_evaluation(published: list[dict], scored: list[dict], metrics: tuple[str, ...], where: str) -> None:
    """Raises SystemExit unless every row of a method scored both times (the deterministic classical baseline)
    has the same images and values in both: the published rows were then scored on the same stacks."""
    def keyed(rows):
        return {(r["method"], r["seed"], r["dataset"], r["region"], r["group_by"], str(r["group"])): r for r in rows}

    old, new = keyed(published), keyed(scored)
    common = {key[0] for key in old} & {key[0] for key in new if key[1] is None}
    if not common:
        raise SystemExit(f"{where} has no classical-baseline rows to check the evaluation against; pass "
                         "--results=<another folder> to report the runs present alone.")
    for key in sorted(k for k in set(old) | set(new) if k[0] in common and k[1] is None):
        a, b = old.get(key), new.get(key)
        differs = a is None or b is None or a["images"] != b["images"] or any(
            not np.isclose(a[m], b[m], rtol=SAME_VALUE_RTOL, atol=1e-7, equal_nan=True) for m in metrics)
        if differs:
            shown = " / ".join(str(None if r is None else r.get("rmse")) for r in (a, b))
            raise SystemExit(
                f"the published rows in {where} were scored on another evaluation: {key[0]} on {key[2]} "
                f"({key[3]}, {key[4]} {key[5]}) gives RMSE {shown} (published / now). Their runs cannot be "
                "reported beside these: pass --results=<another folder> to report the runs present alone, or "
                "train the published runs again.")


def section(report_path: str, heading_start: str, closing: str) -> list[str]:
    """The lines of the `## ` section of a markdown report whose heading starts with `heading_start`, up to the next
    `## ` heading or the report's closing line (`closing`, its start); [] when the report or the section is
    missing."""
    if not os.path.isfile(report_path):
        return []
    with open(report_path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## " + heading_start)), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", closing))), len(lines))
    return lines[start:end]


def table_row(lines: list[str], first_cell: str) -> str | None:
    """The markdown table row among `lines` whose first cell is `first_cell`."""
    return next((line for line in lines if line.startswith(f"| {first_cell} |")), None)
