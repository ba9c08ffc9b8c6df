"""A sweep's plots: each swept parameter against a metric, one PNG each. Every job is a dot; where a setting ran
several times (repeats over seeds) its group's mean is drawn with its 95% interval as an error bar. Groups that
differ in other swept parameters are series of their own."""
from __future__ import annotations

from pathlib import Path

from runner.config.hydra import override_key
from runner.sweeps.groups import Group


def plot(groups: list[Group], param: str, metric: str, path: Path, log_scale: bool | None = None) -> None:
    """The figure below, saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(groups, param, metric, log_scale)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(groups: list[Group], param: str, metric: str, log_scale: bool | None = None):
    """``metric`` against ``param``: every completed job a dot at its exact x (spread sideways only where dots
    coincide), each group's mean and 95% interval where it ran more than once, failed or interrupted jobs marked x
    at the foot of the axis; a log x axis where the values were searched on one (``log_scale``, else doubling
    steps), and a y range no narrower than a tenth of the values' size."""
    import matplotlib  # a second's import, for sweeps that plot: after the jobs, in the sweep's process

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [g for g in groups if g.done(metric) or g.counts()["failed"] + g.counts()["interrupted"]]
    values = [_value(g, param) for g in shown]
    try:
        xs = [float(v) for v in values]
        labels = None
    except ValueError:
        labels = sorted(set(values))
        xs = [float(labels.index(v)) for v in values]
    log_x = labels is None and (log_scale if log_scale is not None else _doubling(xs))
    series: dict[str, list[tuple[float, Group]]] = {}
    for x, g in zip(xs, shown):
        rest = " ".join(f"{k}={v}" for k, v in g.key if override_key(k) != override_key(param) and _varies(groups, k))
        series.setdefault(rest, []).append((x, g))
    fig, ax = plt.subplots(figsize=(6, 4))
    dots: list[tuple[float, float, str]] = []
    failed: list[float] = []
    for i, (name, points) in enumerate(series.items()):
        points.sort(key=lambda p: p[0])
        colour = f"C{i % 10}"
        for x, g in points:
            dots += [(x, y, colour) for y in g.values(metric).values()]
            failed += [x] * (g.counts()["failed"] + g.counts()["interrupted"])
        means = [(x, g.summary(metric)) for x, g in points if g.summary(metric).n >= 2]
        if means:
            ax.errorbar([m[0] for m in means], [m[1].mean for m in means],
                        yerr=[[m[1].mean - m[1].low for m in means], [m[1].high - m[1].mean for m in means]],
                        fmt="o-" if labels is None else "o", color=colour, capsize=4, label=name or None, zorder=3)
    _scatter(ax, dots, log_x)
    ys = [y for _, y, _ in dots]
    if ys:
        _honest_ylim(ax, ys)
    if failed:
        foot = ax.get_ylim()[0]
        ax.scatter(failed, [foot] * len(failed), marker="x", color="red", s=40, clip_on=False, zorder=4,
                   label=f"failed or interrupted ({len(failed)})")
    if log_x:
        ax.set_xscale("log")
        ticks = sorted(set(xs))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    repeated = any(g.summary(metric).n >= 2 for g in shown)
    ax.set_title(f"{metric} vs {param}" + (" (mean, 95% interval; dots: runs)" if repeated else ""))
    if (any(series) and repeated) or failed:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _scatter(ax, dots: list[tuple[float, float, str]], log_x: bool) -> None:
    """Each dot at its x; dots at the same (x, y) spread sideways a little, so each can be seen."""
    seen: dict[tuple[float, float], int] = {}
    for x, y, colour in dots:
        k = seen.get((x, y), 0)
        seen[(x, y)] = k + 1
        shift = (k + 1) // 2 * (1 if k % 2 else -1) * 0.02
        ax.scatter([x * (1 + shift) if log_x else x + shift * _gap([d[0] for d in dots])], [y], s=14, alpha=0.5,
                   color=colour, zorder=2)


def _honest_ylim(ax, ys: list[float]) -> None:
    """A y range at least a tenth of the values' size, so seed noise does not fill the plot."""
    lo, hi = ax.get_ylim()
    least = 0.1 * max(abs(y) for y in ys)
    if hi - lo < least:
        middle = (max(ys) + min(ys)) / 2
        ax.set_ylim(middle - least / 2, middle + least / 2)


def _doubling(xs: list[float]) -> bool:
    """Values swept in steps that multiply (0.01, 0.1 or 64, 128, 256): a log axis shows them evenly."""
    values = sorted(set(xs))
    return len(values) >= 2 and values[0] > 0 and all(b / a >= 1.9 for a, b in zip(values, values[1:]))


def _value(g: Group, param: str) -> str:
    return str(dict(g.key).get(param, ""))


def _varies(groups: list[Group], key: str) -> bool:
    return len({dict(g.key).get(key) for g in groups}) > 1


def _gap(xs: list[float]) -> float:
    """The smallest gap between x values (1 for one value): offsets beside a point are shares of it."""
    values = sorted(set(xs))
    return min([b - a for a, b in zip(values, values[1:])] or [1.0])
