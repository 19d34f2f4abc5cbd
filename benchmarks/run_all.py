"""Runs every benchmark and publishes its tables under experiments/results/ (Markdown + CSV).

    python -m benchmarks.run_all            # full tables (tens of minutes on 2 CPU cores)
    python -m benchmarks.run_all --quick    # tiny cases, to check the pipeline end to end

Each benchmark prints Markdown; this writes `bench_<name>.md` (the output, headed by the commit and the
machine) and `bench_<name>.csv` (every table row of the output, the header row of each table included).
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
import sys

from absl import flags

from benchmarks.machine import cpu_model_name
from dualfocus_jax.command_flags import parse_flags

BENCHMARKS = ("bench_classical", "bench_solvers", "bench_model", "bench_train", "bench_precision")
# What "quick" means to each benchmark (bench_train and bench_precision have no --quick flag).
QUICK_ARGS = {"bench_classical": ["--quick"], "bench_solvers": ["--quick"], "bench_model": ["--quick"],
              "bench_train": ["--sizes=small", "--steps=3", "--input_batches=20"],
              "bench_precision": ["--noaccuracy", "--shapes=3x64x64", "--repeats=1"]}
RESULTS_DIR = os.path.join("experiments", "results")

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_bool("quick", False, "tiny cases of every benchmark (QUICK_ARGS)", flag_values=FLAGS)
flags.DEFINE_list("only", list(BENCHMARKS), "comma-separated subset of " + ", ".join(BENCHMARKS), flag_values=FLAGS)
flags.DEFINE_string("out", RESULTS_DIR, "folder for the published tables", flag_values=FLAGS)


def _known_benchmarks(chosen: list[str]) -> bool:
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise flags.ValidationError(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    return True


flags.register_validator("only", _known_benchmarks, flag_values=FLAGS)


def current_commit() -> str:
    """The checked-out commit (with '+dirty' when the tree has changes), or 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of every Markdown table row (separator rows such as |---|---| left out)."""
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def main(argv=None) -> int:
    # JAX runs in the benchmarks' own processes: a --jax_* flag here would set nothing there.
    parse_flags(FLAGS, argv, program="python -m benchmarks.run_all", doc=__doc__, jax_options=False)
    chosen = [name for name in FLAGS.only if name]
    os.makedirs(FLAGS.out, exist_ok=True)
    header = (f"commit {current_commit()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{cpu_model_name()} ({os.cpu_count()} CPUs, {platform.system()}), "
              f"{'quick' if FLAGS.quick else 'full'} run")
    failed = []
    for name in chosen:
        print(f"== {name} ...", flush=True)
        command = [sys.executable, "-m", f"benchmarks.{name}"] + (QUICK_ARGS[name] if FLAGS.quick else [])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            failed.append(name)
            print(f"   failed (exit {result.returncode}):\n{result.stderr[-2000:]}", flush=True)
            continue
        md_path = os.path.join(FLAGS.out, f"{name}.md")
        with open(md_path, "w", encoding="utf-8") as handle:
            handle.write(f"<!-- {header}; `{' '.join(['python'] + command[1:])}` -->\n\n{result.stdout}")
        csv_path = os.path.join(FLAGS.out, f"{name}.csv")
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(table_rows(result.stdout))
        print(f"   wrote {md_path} and {csv_path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
