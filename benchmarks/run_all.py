"""Runs every benchmark and publishes its tables under experiments/results/ (Markdown + CSV).

    python -m benchmarks.run_all            # full tables (tens of minutes on 2 CPU cores)
    python -m benchmarks.run_all --quick    # tiny cases, to check the pipeline end to end

Each benchmark prints Markdown; this writes `bench_<name>.md` (the output, headed by the commit and the
machine) and `bench_<name>.csv` (every table row of the output, the header row of each table included).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys

from benchmarks.machine import cpu_model_name

BENCHMARKS = ("bench_classical", "bench_solvers", "bench_model", "bench_train", "bench_precision")
# What "quick" means to each benchmark (bench_train is an absl program without a --quick flag).
QUICK_ARGS = {"bench_classical": ["--quick"], "bench_solvers": ["--quick"], "bench_model": ["--quick"],
              "bench_train": ["--sizes=small", "--steps=3", "--input_batches=20"],
              "bench_precision": ["--noaccuracy", "--shapes=3x64x64", "--repeats=1"]}
RESULTS_DIR = os.path.join("experiments", "results")


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny cases of every benchmark (QUICK_ARGS)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated subset of " + ", ".join(BENCHMARKS))
    parser.add_argument("--out", default=RESULTS_DIR, help="folder for the published tables")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    os.makedirs(args.out, exist_ok=True)
    header = (f"commit {current_commit()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{cpu_model_name()} ({os.cpu_count()} CPUs, {platform.system()}), "
              f"{'quick' if args.quick else 'full'} run")
    failed = []
    for name in chosen:
        print(f"== {name} ...", flush=True)
        command = [sys.executable, "-m", f"benchmarks.{name}"] + (QUICK_ARGS[name] if args.quick else [])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            failed.append(name)
            print(f"   failed (exit {result.returncode}):\n{result.stderr[-2000:]}", flush=True)
            continue
        md_path = os.path.join(args.out, f"{name}.md")
        with open(md_path, "w", encoding="utf-8") as handle:
            handle.write(f"<!-- {header}; `{' '.join(['python'] + command[1:])}` -->\n\n{result.stdout}")
        csv_path = os.path.join(args.out, f"{name}.csv")
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(table_rows(result.stdout))
        print(f"   wrote {md_path} and {csv_path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
