"""Evaluators built from `config.evals`, one per entry (big_vision style); the training loop only runs them.

Each entry (`configs.common.eval_split`) names a split, its protocol and a kind:

    network            the run's trained parameters
    untrained_network  the same architecture at its initialisation (the run's seed): what training added
    classical          the classical baseline (refined) on the same examples and slices

Entries with the same `report` (default: the entry's own name) share one report, eval/<report>/: a table with
a row per entry; its per-image CSV and panels are those of the report's network entry (else its first).
An entry with `enabled=False` is skipped, so a command line can switch one off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dualfocus_jax.evaluation.evaluate import EvaluationResult, evaluate_classical, evaluate_model
from dualfocus_jax.evaluation.protocols import EvalProtocol, protocol_named
from dualfocus_jax.model import DualFocusConfig
from dualfocus_jax.prepared_splits import open_split

KINDS = ("untrained_network", "network", "classical")


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One entry of config.evals: its name, kind, report and settings (the config entry itself)."""

    name: str
    kind: str
    report: str
    settings: object

    def row_label(self, model_config: DualFocusConfig, step: int) -> str:
        if self.kind == "network":
            return f"dualfocus {model_config.size}/{model_config.variant} (step {step})"
        return {"untrained_network": "untrained network", "classical": "classical (refined)"}[self.kind]

    def run(self, *, params, untrained_params: Callable[[], object], model_config: DualFocusConfig,
            data_dir: str | None, predict: Callable | None = None,
            progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
        """The metrics of this entry's method; `untrained_params()` is called only by an untrained entry."""
        if self.kind == "classical":
            return evaluate_classical(split_records(self.settings, data_dir), self.settings,
                                      entry_protocol(self.settings))
        chosen = params if self.kind == "network" else untrained_params()
        keep = int(self.settings.num_panels) if self.kind == "network" else 0
        return evaluate_entry(chosen, model_config, self.settings, data_dir, predict=predict, keep_examples=keep,
                              progress=progress if self.kind == "network" else None)


def build_evaluators(evals_config) -> list[Evaluator]:
    """The evaluators of `config.evals`; a ValueError names an unknown kind or protocol before anything runs."""
    evaluators = []
    for name, entry in evals_config.items():
        if not bool(entry.get("enabled", True)):
            continue
        kind = str(entry.get("kind", "network"))
        if kind not in KINDS:
            raise ValueError(f"config.evals.{name}.kind={kind!r}; choose one of {KINDS}.")
        entry_protocol(entry)
        evaluators.append(Evaluator(name, kind, str(entry.get("report", "") or name), entry))
    # Each report's rows in the order of the literature's tables (untrained, trained, baseline), reports in
    # the config's (sorted) order.
    return sorted(evaluators, key=lambda e: (e.report, KINDS.index(e.kind)))


def entry_protocol(entry) -> EvalProtocol:
    """The protocol of an eval entry, with its slice_sampling override ("" keeps the protocol's)."""
    protocol = protocol_named(entry.protocol)
    if entry.get("slice_sampling"):
        protocol = dataclasses.replace(protocol, slice_sampling=entry.slice_sampling)
    return protocol


def split_records(entry, data_dir: str | None):
    """The prepared records of an eval entry's split."""
    return open_split(entry.dataset, entry.split, builder_config=entry.get("builder_config", ""), data_dir=data_dir)


def evaluate_entry(params, model_config: DualFocusConfig, entry, data_dir: str | None, *,
                   predict: Callable | None = None, keep_examples: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
    """The network with `params` on one eval entry (validation, a network evaluator, a benchmark)."""
    return evaluate_model(params, model_config, split_records(entry, data_dir), entry, entry_protocol(entry),
                          keep_examples=keep_examples, progress=progress, predict=predict)


@dataclasses.dataclass
class Report:
    """What one report holds: the first entry's settings, a row per evaluator, and the outcome whose
    per-image values and panels it writes."""

    settings: object
    rows: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    outcome: EvaluationResult | None = None
    outcome_kind: str = ""


def run_evaluators(evaluators: list[Evaluator], *, step: int, say: Callable[[str], None], **run_arguments
                   ) -> dict[str, Report]:
    """Runs every evaluator (arguments as `Evaluator.run`) and gathers their rows by report, in order."""
    reports: dict[str, Report] = {}
    model_config = run_arguments["model_config"]
    for evaluator in evaluators:
        label = evaluator.row_label(model_config, step)
        say(f"== eval {evaluator.report}: {label}")
        outcome = evaluator.run(progress=lambda done, total: say(f"  evaluated {done}/{total}"), **run_arguments)
        report = reports.setdefault(evaluator.report, Report(evaluator.settings))
        report.rows[label] = outcome.metrics
        if report.outcome is None or (evaluator.kind == "network" and report.outcome_kind != "network"):
            report.outcome, report.outcome_kind = outcome, evaluator.kind
    return reports
