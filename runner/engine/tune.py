"""mode=tune's search: a pipeline's fastest settings on this machine, measured on the real train op.

Each trial builds the pipeline with one knob changed from the best settings so far and measures training as the
bench does (runner.engine.measure): its timed windows alternate with windows of one reference bound, the model on a
constant batch with the starting settings' session, so every trial is scored on the same yardstick (the ratio of
its training rate to that bound, paired window by window) even when a trial changes TensorFlow's thread pools.

The search is guided by the start's stage attribution (runner.engine.stages): when the input limits, the pipeline's
own knobs come first (parallelism, then buffers); when the model or the shared CPU does, the thread pools. Each knob
is walked up its candidate values while a step gains more than MARGIN, then down; a knob that gains nothing costs
two trials. The search stops before a trial would pass the budget.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from runner.config.schema import RunnerConfig
from runner.engine.measure import window_figures, bound_runner, measure_pipeline
from runner.engine.model import Parts
from runner.engine.hardware import cores
from runner.engine.stages import attribution, stage_rates
from runner.errors import RunnerError

log = logging.getLogger("runner")
MARGIN = 0.03  # a step must gain this share to be kept: less is within the paired windows' noise
THREAD_KEYS = ("hardware.intra_op_threads", "hardware.inter_op_threads")


@dataclass
class Trial:
    settings: dict  # every knob's value in this trial
    changed: str  # what it changed from the best so far ("start" for the first)
    examples_per_sec: float | None = None  # training, the median of its windows
    ratio: float | None = None  # to the reference bound, the median of the paired windows
    secs: float = 0.0
    kept: bool = False
    error: str = ""


@dataclass
class Result:
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    start: Trial | None = None
    limit: dict | None = None  # the start's attribution
    stopped_by_budget: bool = False
    secs: float = 0.0

    def as_dict(self) -> dict:
        return {"trials": [asdict(t) for t in self.trials], "best": asdict(self.best) if self.best else None,
                "start": asdict(self.start) if self.start else None,
                "limit": self.limit, "stopped_by_budget": self.stopped_by_budget, "secs": self.secs}


def thread_values() -> tuple[int, ...]:
    """Candidate sizes of a thread pool: 0 (TensorFlow's choice), then powers of two up to the cores."""
    n, values = cores(), [0, 1]
    while values[-1] * 2 <= n:
        values.append(values[-1] * 2)
    return tuple(dict.fromkeys([*values, n]))


def ordered(space: dict[str, tuple], limit: str) -> list[str]:
    """The knobs in the order the attribution suggests: the input's own first when it limits, else the pools."""
    pools = [k for k in space if k in THREAD_KEYS]
    own = [k for k in space if k not in THREAD_KEYS]
    return own + pools if limit == "input" else pools + own


def _candidates(values: tuple, current) -> list:
    """The knob's values in order with the current one among them."""
    found = list(values)
    if current not in found:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*found, current])
        found.append(current)
        if numbers:  # -1 (AUTOTUNE) stays last: it is "as many as needed", above any number
            found.sort(key=lambda v: float("inf") if v == -1 else v)
    return found


def search(make_parts: Callable[[dict], Parts], run: RunnerConfig, space: dict[str, tuple], start: dict,
           budget_secs: float, grid: bool = False, result: Result | None = None) -> Result:
    """Tunes the knobs of ``space`` ({key: candidate values}) from ``start`` ({key: value}) within the budget;
    ``grid``: every combination instead (the yardstick the guided search is judged by). Trials go into ``result``
    as they are measured, so a caller keeps them when a signal stops the search."""
    began = time.monotonic()
    result = Result() if result is None else result
    first = make_parts(start)
    bound_windows: list = []
    with bound_runner(first, run) as bound_step:
        for _ in range(run.bench.warmup_steps):
            bound_step()

        def measure(settings: dict, changed: str) -> tuple[Trial, dict | None]:
            trial = Trial(dict(settings), changed)
            t0 = time.monotonic()
            try:
                measured = measure_pipeline(make_parts(settings), run, bound_step, bound_windows)
                trial.examples_per_sec = measured["train_examples_per_sec"]
                trial.ratio = measured["ratio_to_bound"]
            except RunnerError as err:  # a setting this machine cannot run (a constant past 2 GB): not a winner
                trial.error = str(err)
                measured = None
            trial.secs = time.monotonic() - t0
            result.trials.append(trial)
            log.info("trial %-3d %-44s %s", len(result.trials) - 1, changed,
                     f"{trial.examples_per_sec:,.1f} examples/sec, {trial.ratio:.3f} x the bound" if trial.ratio
                     else f"failed: {trial.error}")
            return trial, measured

        best, measured = measure(start, "start")
        if measured is None:
            raise RunnerError(f"mode=tune: the starting settings do not run: {best.error}")
        best.kept = True
        result.start = best
        stages = stage_rates(lambda: make_parts(start).pipeline, first.session_config, run.batch_size,
                             run.bench.windows, measured)
        result.limit = attribution(stages, measured, window_figures(bound_windows), cores())
        log.info("start: %s limits (%s its costliest stage); knobs in that order: %s", result.limit["limit"],
                 result.limit["costliest_stage"], ", ".join(ordered(space, result.limit["limit"])))
        slowest = best.secs
        if grid:  # every combination, for judging the guided search against (tune.search=grid)
            for values in itertools.product(*(_candidates(space[k], start[k]) for k in space)):
                settings = dict(zip(space, values))
                if settings == start:
                    continue
                if time.monotonic() - began + slowest > budget_secs:
                    result.stopped_by_budget = True
                    break
                changed = " ".join(f"{k.split('.')[-1]}={v}" for k, v in settings.items() if v != start[k])
                trial, _ = measure(settings, changed)
                slowest = max(slowest, trial.secs)
                if trial.ratio is not None and trial.ratio > best.ratio:
                    best = trial
            best.kept = True
            result.best = best
            result.secs = time.monotonic() - began
            return result
        for key in ordered(space, result.limit["limit"]):
            values = _candidates(space[key], best.settings[key])
            for step in (1, -1):
                i, moved = values.index(best.settings[key]), False
                while 0 <= i + step < len(values):
                    if time.monotonic() - began + slowest > budget_secs:
                        result.stopped_by_budget = True
                        break
                    i += step
                    trial, _ = measure({**best.settings, key: values[i]}, f"{key}={values[i]}")
                    slowest = max(slowest, trial.secs)
                    if trial.ratio is None or trial.ratio <= best.ratio * (1 + MARGIN):
                        break
                    trial.kept, best, moved = True, trial, True
                if moved or result.stopped_by_budget:
                    break
            if result.stopped_by_budget:
                break
    result.best = best
    result.secs = time.monotonic() - began
    return result


def gain(best: Trial, start: Trial) -> str:
    """The winner against the start, in both figures: its ratio to the bound (what ranks trials: each trial's
    windows paired with the bound's, so a busy machine does not move it) and its raw examples/sec."""
    return (f"{best.ratio / start.ratio:.2f} x the start's ratio to the bound, "
            f"{best.examples_per_sec / start.examples_per_sec:.2f} x its examples/sec")


def table(result: Result, keys: list[str]) -> str:
    """The trials: what each changed, its training rate and ratio to the bound, whether it was kept."""
    head = f"{'trial':<6} {'changed':<44} {'train ex/s':>11} {'x bound':>8} {'secs':>6}  kept"
    lines = [head, "-" * len(head)]
    for i, t in enumerate(result.trials):
        rate = f"{t.examples_per_sec:,.1f}" if t.examples_per_sec else "failed"
        ratio = f"{t.ratio:.3f}" if t.ratio else ""
        lines.append(f"{i if i else 'start':<6} {t.changed:<44} {rate:>11} {ratio:>8} {t.secs:>6.1f}  "
                     f"{'yes' if t.kept else ''}")
    best = result.best
    lines.append(f"best: {' '.join(f'{k}={best.settings[k]}' for k in keys)}: {best.examples_per_sec:,.1f} "
                 f"examples/sec ({gain(best, result.start)}), in {result.secs:.0f} s "
                 f"({len(result.trials)} trials{', stopped by the budget' if result.stopped_by_budget else ''})")
    return "\n".join(lines)
