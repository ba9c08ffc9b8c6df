"""A sweep's jobs as groups of repeats: jobs whose overrides differ only in the keys of ``report.replicate_over``
(the seed) are one setting run several times. Each group gets n, mean, standard deviation and a 95% interval per
metric, and is compared with the best group on each of the metrics ``report.compare`` names (by default the sweep's
objective, or the main precision), with a verdict that tells a real difference from seed noise (runner.core.stats).
Failed, interrupted and unfinished jobs are counted in their group, never averaged in."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from runner.config.hydra import override_key
from runner.config.schema import SPLITS
from runner.core.results import column_of, higher_is_better, objective_paths
from runner.core.stats import (
    ALPHA,
    CONFIDENCE,
    Comparison,
    Summary,
    compare,
    decimals,
    hint,
    plus_minus,
    summarize,
    verdict,
)

NOT_STATS = ("steps",)  # numbers that say how long a job ran, not how well
STATUSES = ("completed", "pruned", "failed", "interrupted", "incomplete")  # pruned: a search's trial


@dataclass
class Group:
    key: tuple  # the overrides its jobs share, replicate keys left out
    label: str = ""  # the overrides that tell it from the other groups
    rows: list[dict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = [r["status"] if r["status"] in STATUSES else "incomplete" for r in self.rows]  # unreadable too
        return {s: counted.count(s) for s in STATUSES}

    def done(self, metric: str) -> list[dict]:
        return [r for r in self.rows if r["status"] == "completed" and _number(r.get(metric))]

    def values(self, metric: str) -> dict:
        """{replicate: value} of the completed jobs (keyed by job where a replicate repeats, so nothing pairs)."""
        done = self.done(metric)
        replicates = [r["replicate"] for r in done]
        unique = len(set(replicates)) == len(replicates)
        return {(r["replicate"] if unique else r["job"]): float(r[metric]) for r in done}

    def summary(self, metric: str) -> Summary:
        return summarize(list(self.values(metric).values()))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def group(rows: list[dict], replicate_over: list[str]) -> list[Group]:
    """Rows (with ``params`` and ``replicate``) grouped by their overrides less the replicate keys, in the order
    each group's first job appears; labels name the overrides that differ between groups."""
    skip = {override_key(k) for k in replicate_over}
    groups: dict[tuple, Group] = {}
    for row in rows:
        key = tuple(sorted((k, v) for k, v in row["params"].items() if override_key(k) not in skip))
        groups.setdefault(key, Group(key)).rows.append(row)
    found = list(groups.values())
    keys = sorted({k for g in found for k, _ in g.key})
    varying = [k for k in keys if len({dict(g.key).get(k) for g in found}) > 1]
    for g in found:
        params = dict(g.key)
        g.label = " ".join(f"{k}={params[k]}" for k in varying if k in params) or "all jobs"
    return found


def objective_metric(objective: Any) -> str | None:
    """sweep_objective (its first path in summary.json) as the report's column: final_precision.test ->
    precision_test."""
    paths = objective_paths(objective)
    return column_of(paths[0]) if paths else None


def compared_metrics(rows: list[dict], compare_on: list[str] | None, objective: Any) -> list[str]:
    """report.compare, else the sweep's objective, else the main metric (the last split's precision, or a rate)."""
    if compare_on:
        return list(compare_on)
    found = objective_metric(objective)
    if found:
        return [found]
    for key in [f"precision_{s}" for s in reversed(SPLITS)] + ["examples_per_sec", "bound_examples_per_sec"]:
        if any(key in r for r in rows):
            return [key]
    return []


def stats_metrics(metrics: list[str]) -> list[str]:
    return [m for m in metrics if m not in NOT_STATS]


@dataclass(frozen=True)
class Versus:
    """One group against the best on a metric."""

    metric: str
    group: Group
    best: Group
    result: Comparison | None

    def line(self) -> str:
        head = f"{self.group.label} − {self.best.label}"
        c = self.result
        if c is None:
            n = min(len(self.group.values(self.metric)), len(self.best.values(self.metric)))
            return (f"{head}: n={n} on a side, so no interval: repeat over seeds (seed=range(5)) to tell a real "
                    f"difference from noise")
        n = f"n={c.n_a} each" if c.n_a == c.n_b else f"n={c.n_a} and {c.n_b}"
        text = f"{head}: {plus_minus(c.diff, c.half_width, signed=True)} ({n}, {c.test}, p={c.p:.2g}): {verdict(c)}"
        more = hint(c)
        return text + (f"; {more}" if more else "")


def best_group(groups: list[Group], metric: str) -> Group | None:
    scored = [g for g in groups if g.done(metric)]
    if not scored:
        return None
    sign = 1 if higher_is_better(metric) else -1
    return max(scored, key=lambda g: sign * g.summary(metric).mean)


def versus_best(groups: list[Group], metric: str) -> list[Versus]:
    best = best_group(groups, metric)
    if best is None:
        return []
    return [Versus(metric, g, best, compare(g.values(metric), best.values(metric)))
            for g in groups if g is not best and g.done(metric)]


def _fmt(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4g}"


def cell(s: Summary) -> str:
    """A metric's cell: mean ± half the interval (sd), or the one value."""
    if s.n == 0:
        return ""
    if s.n == 1:
        return _fmt(s.mean)
    places = decimals(s.half_width)
    sd = f"{s.std:.{places}f}" if places is not None else f"{s.std:.2g}"
    return f"{plus_minus(s.mean, s.half_width)} (sd {sd})"


def markdown(groups: list[Group], metrics: list[str], compared: list[str], replicate_over: list[str]) -> list[str]:
    """The report's groups table and its comparisons with the best group."""
    over = ", ".join(replicate_over) or "nothing"
    lines = [f"## Groups: jobs that differ only in {over}", "",
             f"Each metric: mean ± half its {CONFIDENCE:.0%} interval (Student's t), with the standard deviation; "
             f"failed, interrupted and incomplete jobs are counted, not averaged.", ""]
    shown = [s for s in STATUSES[1:] if s != "pruned" or any(g.counts()["pruned"] for g in groups)]
    head = ["group", "n", *shown, *metrics]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        counts = g.counts()
        lines.append("| " + " | ".join([g.label.replace("|", "\\|"), str(counts["completed"]),
                                        *(str(counts[s]) for s in shown),
                                        *(cell(g.summary(m)) for m in metrics)]) + " |")
    for metric in compared:
        found = versus_best(groups, metric)
        if not found:
            continue
        best = found[0].best
        direction = "highest" if higher_is_better(metric) else "lowest"
        lines += ["", f"### {metric}: each group against the best ({best.label}, {direction} mean)", "",
                  f"Differences with their {CONFIDENCE:.0%} interval: a paired t-test over the {over} values both "
                  f"groups ran (when they share at least half of them), else Welch's t-test; distinguishable at "
                  f"p < {ALPHA:.2g}.", ""]
        lines += [f"- {v.line()}" for v in found]
        if len(found) > 1:
            lines += ["", f"With {len(found)} comparisons, an equal pair is still called distinguishable one time in "
                          f"{1 / ALPHA:.0f} each: take a p near {ALPHA:g} as a reason to repeat more, not as proof."]
    return lines


def as_json(groups: list[Group], metrics: list[str], compared: list[str]) -> dict:
    """The groups and comparisons for report.json."""
    out = {"groups": [], "comparisons": []}
    for g in groups:
        entry = {"label": g.label, "overrides": [f"{k}={v}" for k, v in g.key], "jobs": [r["job"] for r in g.rows],
                 **g.counts(), "metrics": {}}
        for m in metrics:
            s = g.summary(m)
            if s.n:
                entry["metrics"][m] = {"n": s.n, "mean": s.mean, "std": _or_none(s.std), "low": _or_none(s.low),
                                       "high": _or_none(s.high)}
        out["groups"].append(entry)
    for metric in compared:
        for v in versus_best(groups, metric):
            c = v.result
            out["comparisons"].append({
                "metric": metric, "group": v.group.label, "best": v.best.label, "text": v.line(),
                **({**c.as_dict(), "n": [c.n_a, c.n_b]} if c else {})})
    return out


def _or_none(value: float):
    return None if math.isnan(value) else value
