"""How much of the ablation's engine-split means rests on a few stacks: per-image medians and the stacks on which the
variants differ most (a section of experiments/results/ablation_engine/ablation_engine.md).

A mean AbsRel over 135 stacks can move by tens of percent when a network places one near scene several times too far
(AbsRel 3-4 on one stack), so the report beside the means gives, per variant, the median over images (mean ± std over
seeds) and the mean without the few stacks on which the full model and the reference differ most, and lists those
stacks with their camera, coverage and spacing.
"""

from __future__ import annotations

import numpy as np

ENGINE = "engine"
METRICS = ("abs_rel", "rmse_range")
LABELS = {"abs_rel": "AbsRel", "rmse_range": "RMSE / focus range"}
GROUP_KEYS = ("scene_family", "camera_family", "coverage", "spacing", "slices")


def per_image(records: list[dict], metric: str) -> dict[str, float]:
    """example → value of `metric` over all scored pixels of the engine split (finite values only)."""
    values = {}
    for record in records:
        if record["dataset"] == ENGINE and record["region"] == "all" and np.isfinite(float(record[metric])):
            values[record["example"]] = float(record[metric])
    return values


def seeds_of(collected: dict, method: str) -> list:
    return sorted(seed for name, seed in collected if name == method)


def mean_over_seeds(collected: dict, method: str, metric: str) -> dict[str, float]:
    """example → the mean over the method's seeds of its per-image value (examples every seed scored)."""
    per_seed = [per_image(collected[(method, seed)], metric) for seed in seeds_of(collected, method)]
    if not per_seed:
        return {}
    common = set.intersection(*(set(values) for values in per_seed))
    return {example: float(np.mean([values[example] for values in per_seed])) for example in common}


def largest_differences(collected: dict, method: str, reference: str, metric: str, top: int) -> list[tuple[str, float]]:
    """The `top` stacks with the largest |method − reference| (means over seeds), largest first: (example, diff)."""
    ours, theirs = mean_over_seeds(collected, method, metric), mean_over_seeds(collected, reference, metric)
    differences = [(example, ours[example] - theirs[example]) for example in ours if example in theirs]
    return sorted(differences, key=lambda item: -abs(item[1]))[:top]


def spread_cell(values: list[float], reference_mean: float | None) -> str:
    mean = float(np.mean(values))
    text = f"{mean:.4f} ± {float(np.std(values, ddof=1)) if len(values) > 1 else 0.0:.4f}"
    if reference_mean:
        text += f" ({100 * (mean / reference_mean - 1):+.0f}%)"
    return text


def robustness_section(collected: dict, methods: list[str], *, method: str = "dualfocus", reference: str = "dfv",
                       top: int = 2, listed: int = 6) -> list[str]:
    """Markdown lines: per method, the per-image median of each metric and the mean AbsRel without the `top`
    stacks where `method` and `reference` differ most (each mean ± std over seeds; change against the reference),
    then the `listed` stacks of largest difference with every method's value."""
    networks = [m for m in methods if seeds_of(collected, m) and None not in seeds_of(collected, m)]
    if method not in networks or reference not in networks:
        return []
    ranked = largest_differences(collected, method, reference, "abs_rel", max(top, listed))
    left_out = [example for example, _ in ranked[:top]]

    def per_seed(name: str, statistic) -> list[float]:
        return [statistic(collected[(name, seed)]) for seed in seeds_of(collected, name)]

    def median_of(metric):
        return lambda records: float(np.median(list(per_image(records, metric).values())))

    def mean_without(records):
        return float(np.mean([v for e, v in per_image(records, "abs_rel").items() if e not in left_out]))

    statistics = [(f"median {LABELS[m]}", median_of(m)) for m in METRICS]
    statistics.append((f"mean AbsRel without the {top} stacks of largest difference", mean_without))
    reference_means = {title: float(np.mean(per_seed(reference, statistic))) for title, statistic in statistics}
    lines = ["## How much of the means rests on a few stacks", "",
             f"Per image over the engine split's stacks (all scored pixels), then mean ± std over seeds; (±x%): change "
             f"against {reference}. The stacks of largest difference are those where {method} and {reference} "
             f"differ most in AbsRel (mean over seeds): {', '.join(f'`{e}`' for e in left_out)}.", "",
             "| method | " + " | ".join(title for title, _ in statistics) + " |",
             "|---|" + "---|" * len(statistics)]
    for name in networks:
        cells = [spread_cell(per_seed(name, statistic), None if name == reference else reference_means[title])
                 for title, statistic in statistics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    groups = {}
    for records in collected.values():
        for record in records:
            if record["dataset"] == ENGINE:
                groups.setdefault(record["example"], {k: record.get(k) for k in GROUP_KEYS})
    means = {name: mean_over_seeds(collected, name, "abs_rel") for name in networks}
    lines += ["", f"The {listed} stacks where {method} and {reference} differ most (AbsRel, mean over seeds):", "",
              "| stack | " + " | ".join(GROUP_KEYS) + " | " + " | ".join(networks) + " |",
              "|---|" + "---|" * (len(GROUP_KEYS) + len(networks))]
    for example, _ in ranked[:listed]:
        info = groups.get(example, {})
        values = [f"{means[name][example]:.3f}" if example in means[name] else "–" for name in networks]
        lines.append(f"| {example} | " + " | ".join(str(info.get(k, "")) for k in GROUP_KEYS) + " | "
                     + " | ".join(values) + " |")
    return lines + [""]
