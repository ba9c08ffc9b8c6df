"""The numbers a run reports, named once. Each :class:`Metric` says where it lives in a job's result file
(summary.json or bench.json), its column in a sweep's report, which way is better and its unit. The engine's
summary, the sweep report's rows, ``sweep_objective``, ``report.compare`` and the checks of both read this table,
so a metric has one name per place and one direction."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

SUMMARY = "summary.json"  # a training run's result (runner.engine.training)
BENCH = "bench.json"  # mode=bench's result (runner.perf.bench)


class TrainSummary(TypedDict):
    """summary.json of a training run (the metrics' paths below are its keys)."""

    final_precision: dict[str, float]  # precision@1 by split, of the last eval
    steps: int  # the global step reached
    steps_this_run: int  # trained by this process (a resumed run's share)
    examples_per_sec: float | None
    examples_per_step: int
    wall_time_sec: float
    trainable_parameters: int
    pipeline: str  # the parts' registry names
    dataset: str
    model: str
    trainer: str
    devices: list[str]
    config: dict
    stopped_early: bool  # early_stopping stopped it before max_steps
    early_stopping: dict | None  # then: step, metric, best, best_step, patience
    best_checkpoint: dict | None  # checkpoint.keep_best's: metric, value, step, checkpoint (in checkpoints/best/)


class BenchResult(TypedDict, total=False):
    """bench.json of mode=bench (runner.perf.bench): the first precision's figures at the top level."""

    bound_examples_per_sec: float  # the model alone: the train op on a constant batch
    bound_cpu_us_per_example: float
    bound_window_examples_per_sec: list[float]
    pipelines: dict[str, dict]  # by pipeline (and arm): ratio_to_bound, its windows, stages, attribution, ...
    devices: list[str]
    repeats: int
    comparisons: list[dict]  # with bench.repeats > 1: each pair of pipelines, paired t-test by round
    precision: str
    precisions: dict[str, dict]  # with several bench.precisions: each one's figures
    precision_bounds: dict[str, dict]  # each precision's bound against the first's, window by window
    wall_time_sec: float
    settings: dict
    config: dict
    interrupted: str  # the signal that stopped it; what finished is kept


@dataclass(frozen=True)
class Metric:
    column: str  # the report's column (report.compare names it)
    path: str  # dotted path in its file (sweep_objective names it, for summary.json)
    file: str  # SUMMARY or BENCH
    higher_is_better: bool
    unit: str
    compared: bool = True  # report.compare may name it
    reported: bool = True  # a column of the report's rows


def metrics(splits: Iterable[str], pipelines: Iterable[str] = ()) -> list[Metric]:
    """Every metric of runs that evaluate ``splits`` and benches of ``pipelines``, summary.json's first."""
    return [
        *(Metric(f"precision_{s}", f"final_precision.{s}", SUMMARY, True, "precision@1") for s in splits),
        Metric("examples_per_sec", "examples_per_sec", SUMMARY, True, "examples/sec"),
        Metric("train_time_sec", "wall_time_sec", SUMMARY, False, "s"),
        Metric("steps", "steps", SUMMARY, True, "steps", compared=False),
        Metric("steps_this_run", "steps_this_run", SUMMARY, True, "steps", compared=False, reported=False),
        Metric("bench_time_sec", "wall_time_sec", BENCH, False, "s"),
        Metric("bound_examples_per_sec", "bound_examples_per_sec", BENCH, True, "examples/sec"),
        *(Metric(f"{p}_ratio_to_bound", f"pipelines.{p}.ratio_to_bound", BENCH, True, "x the bound")
          for p in pipelines),
    ]


def objectives(splits: Iterable[str]) -> list[str]:
    """The summary.json paths ``sweep_objective`` may name."""
    return [m.path for m in metrics(splits) if m.file == SUMMARY]


def as_text(value: Any) -> str:
    """A value as a table shows it: 75,441 (not 75440.8), 0.9996, 4.2e-06; nothing for none."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def objective_paths(objective: Any) -> tuple[str, ...]:
    """``sweep_objective`` (one name or a list) as summary.json paths: each given as a path (final_precision.test) or
    as its report column (precision_test)."""
    names = [objective] if isinstance(objective, str) else list(objective or [])
    by_column = {m.column: m.path for m in metrics(("train", "validation", "test")) if m.file == SUMMARY}
    return tuple(by_column.get(str(n), str(n)) for n in names)


def compared(splits: Iterable[str], pipelines: Iterable[str]) -> list[str]:
    """The columns ``report.compare`` may name."""
    return [m.column for m in metrics(splits, pipelines) if m.compared]


def column_of(path: str) -> str:
    """A summary.json path's report column: ``final_precision.test`` -> ``precision_test``,
    ``wall_time_sec`` -> ``train_time_sec``."""
    split = path.split(".", 1)[1] if path.startswith("final_precision.") else None
    found = next((m for m in metrics([split] if split else []) if m.file == SUMMARY and m.path == path), None)
    return found.column if found else path.replace(".", "_")


def higher_is_better(column: str) -> bool:
    """A report column's direction; a column outside the table (a bench's first_batch_sec) by its unit: times are
    better low; precisions, rates and ratios high."""
    for m in metrics([column[len("precision_"):]] if column.startswith("precision_") else [],
                     [column[:-len("_ratio_to_bound")]] if column.endswith("_ratio_to_bound") else []):
        if m.column == column:
            return m.higher_is_better
    return not (column.endswith("_sec") and not column.endswith("per_sec"))


def at(result: dict, path: str) -> Any:
    """The value at a dotted path of a result, or None."""
    value: Any = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def columns(result: dict, file: str) -> dict[str, Any]:
    """A result file's metrics as report columns, for the splits and pipelines it holds."""
    splits = result.get("final_precision") or {} if file == SUMMARY else {}
    pipelines = result.get("pipelines") or {} if file == BENCH else {}
    return {m.column: at(result, m.path) for m in metrics(splits, pipelines) if m.file == file and m.reported}
