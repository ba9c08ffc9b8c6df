"""The report of a search (hydra/sweeper=optuna): its trials best first with their states, the best trial or the
Pareto front (a table, a plot, and each member's command to rerun it), Optuna's parameter importances and the
optimization history as a plot. Read from the study the sweep dir's search.json names."""
from __future__ import annotations

import logging
import math
import shlex
from pathlib import Path
from typing import Any

from runner.core.results import as_text, column_of
from runner.records.rundirs import STUDY_FILE
from runner.sweeps.search import load

log = logging.getLogger("runner")


def section(sweep_dir: Path, out: Path, rows: list[dict]) -> list[str]:
    """The report's lines on the search in ``sweep_dir`` (none when it ran no search); its plots go into ``out``."""
    study_file = sweep_dir / STUDY_FILE
    if not study_file.is_file():
        return []
    try:
        study, saved = load(study_file)
    except Exception as err:  # noqa: BLE001  a report of the jobs is still worth writing
        return ["## Search", "", f"The study named in {study_file} cannot be read ({type(err).__name__}: {err}).", ""]
    from optuna.trial import TrialState

    names = [column_of(p) for p in saved["objectives"]]
    directions = saved["directions"]
    trials = study.get_trials(deepcopy=False)
    commands = {r["job"]: _command(r["override_list"]) for r in rows}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s: sum(t.state.name.lower() == s for t in trials) for s in ("complete", "pruned", "fail", "running")}
    lines = ["## Search", "",
             f"Study `{saved['study_name']}`, {saved['sampler']} sampler, pruner {saved['pruner']}: "
             f"{len(trials)} trials, {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"
             + (f", {counts['running']} to resume (rerun the same command)" if counts["running"] else "") + ". "
             + "Objective" + ("s" if len(names) > 1 else "") + ": "
             + ", ".join(f"`{n}` ({d})" for n, d in zip(names, directions)) + ".", ""]
    if len(names) == 1:
        lines += _best(study, complete, names[0], commands)
    else:
        lines += _front(study, complete, names, directions, commands, out)
    lines += _importances(study, complete, names)
    if _history(trials, names[0], directions[0], out / "search_history.png"):
        lines += ["![search history](search_history.png)", ""]
    lines += _table(trials, names, directions)
    return lines


def _command(overrides: list[str]) -> str:
    return "python -m runner " + " ".join(shlex.quote(o) for o in overrides)


def _best(study: Any, complete: list, name: str, commands: dict[str, str]) -> list[str]:
    if not complete:
        return ["No trial has completed yet.", ""]
    best = study.best_trial
    return [f"Best: trial {best.number}, `{name}` = {as_text(best.value)} "
            f"({', '.join(f'{k}={as_text(v)}' for k, v in best.params.items())}). Rerun it:", "",
            "```bash", commands.get(str(best.number), "(its job dir is missing)"), "```", ""]


def _front(study: Any, complete: list, names: list[str], directions: list[str], commands: dict[str, str],
           out: Path) -> list[str]:
    if not complete:
        return ["No trial has completed yet.", ""]
    front = sorted(study.best_trials, key=lambda t: t.values[0], reverse=directions[0] == "maximize")
    lines = [f"Pareto front: {len(front)} of {len(complete)} complete trials (none of them beaten on every "
             f"objective by another).", "", "| trial | " + " | ".join(names) + " | command |",
             "|---|" + "---|" * len(names) + "---|"]
    lines += [f"| {t.number} | " + " | ".join(as_text(v) for v in t.values)
              + f" | `{commands.get(str(t.number), '')}` |" for t in front]
    lines.append("")
    if len(names) == 2:
        _front_plot(complete, front, names, out / "search_front.png")
        lines += ["![Pareto front](search_front.png)", ""]
    return lines


def _importances(study: Any, complete: list, names: list[str]) -> list[str]:
    """Optuna's parameter importances (its default evaluator) of each objective, once enough trials completed."""
    import optuna

    if len(complete) < 3 or not complete[0].params:
        return []
    lines = ["Parameter importances (Optuna's default evaluator: the share of each parameter in the objective's "
             "variation over the complete trials):", ""]
    for i, name in enumerate(names):
        try:
            found = optuna.importance.get_param_importances(
                study, target=(lambda t, i=i: t.values[i]) if len(names) > 1 else None)
        except (RuntimeError, ValueError, ZeroDivisionError) as err:
            lines.append(f"- `{name}`: not available ({err})")
            continue
        lines.append(f"- `{name}`: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))
    return [*lines, ""]


def _table(trials: list, names: list[str], directions: list[str]) -> list[str]:
    """Every trial, complete ones best first (by the first objective), then pruned (by their last value), failed,
    running."""
    from optuna.trial import TrialState

    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2}
    sign = -1 if directions[0] == "maximize" else 1

    def key(t: Any) -> tuple:
        value = t.values[0] if t.values else _last(t)
        return order.get(t.state, 3), sign * value if value is not None else math.inf, t.number

    params = sorted({k for t in trials for k in t.params})
    lines = ["### Trials", "", "| trial | state | " + " | ".join(names) + " | " + " | ".join(params) + " |",
             "|---|---|" + "---|" * (len(names) + len(params))]
    for t in sorted(trials, key=key):
        values = list(t.values) if t.values else [_last(t)] + [None] * (len(names) - 1)
        shown = [as_text(v) + (f" (step {max(t.intermediate_values)})" if t.state == TrialState.PRUNED and v is not None
                            and t.intermediate_values else "") for v in values]
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(shown) + " | "
                     + " | ".join(as_text(t.params.get(k)) for k in params) + " |")
    return [*lines, ""]


def _last(trial: Any) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _history(trials: list, name: str, direction: str, path: Path) -> bool:
    """The objective of each trial by its number (complete: dots; pruned: x at its last value) and the best so
    far as a line."""
    from optuna.trial import TrialState

    points = [(t.number, t.values[0] if t.values else _last(t), t.state) for t in trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    points = [p for p in points if p[1] is not None]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    done = [(n, v) for n, v, s in points if s == TrialState.COMPLETE]
    pruned = [(n, v) for n, v, s in points if s == TrialState.PRUNED]
    if done:
        ax.plot(*zip(*done), "o", label="complete")
        best, line = None, []
        for n, v in sorted(done):
            best = v if best is None else (max if direction == "maximize" else min)(best, v)
            line.append((n, best))
        ax.step(*zip(*line), where="post", label="best so far")
    if pruned:
        ax.plot(*zip(*pruned), "x", color="grey", label="pruned (last value)")
    ax.set_xlabel("trial")
    ax.set_ylabel(name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _front_plot(complete: list, front: list, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([t.values[0] for t in complete], [t.values[1] for t in complete], "o", color="lightgrey",
            label="complete")
    ordered = sorted(front, key=lambda t: t.values[0])
    ax.plot([t.values[0] for t in ordered], [t.values[1] for t in ordered], "o-", color="C0", label="Pareto front")
    for t in ordered:
        ax.annotate(str(t.number), (t.values[0], t.values[1]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
