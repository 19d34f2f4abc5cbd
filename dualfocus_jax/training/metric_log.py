"""The log of training and evaluation metrics, for people and for plotting tools.

Each record (a step and named scalars, under a kind such as "train" or "eval_test") is appended to
`<workdir>/metrics/<kind>.jsonl` (one JSON object per line: `{"step": …, "wall_time": …, name: value, …}`)
and `<workdir>/metrics/<kind>.csv` (columns fixed by the first record of the kind). Both are readable in a
text editor, by pandas (`pd.read_json(path, lines=True)`, `pd.read_csv`) and by any spreadsheet. TensorBoard
event files are written as well when `tensorboardX` is installed (it is not a requirement: writing the
event protocol needs protobuf classes that TensorFlow or tensorboardX provide); view them with
`tensorboard --logdir <workdir>/tensorboard`.

Appending means a resumed run continues the same files; records of steps repeated after a restart (the
steps between the last checkpoint and the kill) appear twice, the later one is the one that counts.
"""

from __future__ import annotations

import csv
import json
import os
import time

try:
    from tensorboardX import SummaryWriter
except ImportError:  # optional: without it the metrics go to the JSON lines and CSV files only
    SummaryWriter = None


class MetricLog:
    """Appends scalar metrics to JSON-lines and CSV files (and TensorBoard if tensorboardX is importable).

    Only process 0 of a multi-process run should write: pass `enabled=False` on the others.
    """

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.folder = os.path.join(os.path.abspath(workdir), "metrics")
        self.enabled = enabled
        self._tensorboard = None
        if enabled:
            os.makedirs(self.folder, exist_ok=True)
            if SummaryWriter is not None:
                self._tensorboard = SummaryWriter(os.path.join(os.path.abspath(workdir), "tensorboard"))

    def write(self, kind: str, step: int, scalars: dict[str, float]) -> None:
        """Appends one record of `kind` at `step` (scalars: name → number)."""
        if not self.enabled:
            return
        if not kind.replace("_", "").isalnum():
            raise ValueError(f"metric kind must be letters, digits and '_', got {kind!r}.")
        record = {"step": int(step), "wall_time": round(time.time(), 3)}
        record.update({name: float(value) for name, value in scalars.items()})
        with open(os.path.join(self.folder, f"{kind}.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        csv_path = os.path.join(self.folder, f"{kind}.csv")
        new_file = not os.path.exists(csv_path)
        if new_file:
            columns = list(record)
        else:
            with open(csv_path, newline="", encoding="utf-8") as handle:
                columns = next(csv.reader(handle))
        with open(csv_path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(record)
        if self._tensorboard is not None:
            for name, value in scalars.items():
                self._tensorboard.add_scalar(f"{kind}/{name}", float(value), int(step))
            self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_records(workdir: str, kind: str) -> list[dict]:
    """All records of `kind` from the JSON-lines log, in the order written."""
    path = os.path.join(os.path.abspath(workdir), "metrics", f"{kind}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
