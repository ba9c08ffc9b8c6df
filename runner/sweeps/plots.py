"""A sweep's plots: each swept parameter against a metric, one PNG each. Every job is a dot; where a setting ran
several times (repeats over seeds) its group's mean is drawn with its 95% interval as an error bar. Groups that
differ in other swept parameters are series of their own."""
from __future__ import annotations

from pathlib import Path

from runner.sweeps.groups import Group, bare


def plot(groups: list[Group], param: str, metric: str, path: Path) -> None:
    import matplotlib  # a second's import, for sweeps that plot: after the jobs, in the sweep's process

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [g for g in groups if g.done(metric)]
    values = [_value(g, param) for g in shown]
    try:
        xs = [float(v) for v in values]
        labels = None
    except ValueError:
        labels = sorted(set(values))
        xs = [float(labels.index(v)) for v in values]
    series: dict[str, list[tuple[float, Group]]] = {}
    for x, g in zip(xs, shown):
        rest = " ".join(f"{k}={v}" for k, v in g.key if bare(k) != bare(param) and _varies(groups, k))
        series.setdefault(rest, []).append((x, g))
    fig, ax = plt.subplots(figsize=(6, 4))
    unit = _gap(xs)
    spread = 0.25 * unit / len(series) if len(series) > 1 else 0.0
    for i, (name, points) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * spread
        points.sort(key=lambda p: p[0])
        colour = f"C{i % 10}"
        for x, g in points:
            ys = list(g.values(metric).values())
            ax.scatter([x + offset - 0.04 * unit] * len(ys), ys, s=14, alpha=0.45, color=colour)  # beside the bar
        means = [(x + offset, g.summary(metric)) for x, g in points if g.summary(metric).n >= 2]
        if means:
            ax.errorbar([m[0] for m in means], [m[1].mean for m in means],
                        yerr=[[m[1].mean - m[1].low for m in means], [m[1].high - m[1].mean for m in means]],
                        fmt="o-" if labels is None else "o", color=colour, capsize=4, label=name or None)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    repeated = any(g.summary(metric).n >= 2 for g in shown)
    ax.set_title(f"{metric} vs {param}" + (" (mean, 95% interval; dots: runs)" if repeated else ""))
    if any(series) and repeated:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _value(g: Group, param: str) -> str:
    return str(dict(g.key).get(param, ""))


def _varies(groups: list[Group], key: str) -> bool:
    return len({dict(g.key).get(key) for g in groups}) > 1


def _gap(xs: list[float]) -> float:
    """The smallest gap between x values (1 for one value): offsets beside a point are shares of it."""
    values = sorted(set(xs))
    return min([b - a for a, b in zip(values, values[1:])] or [1.0])
