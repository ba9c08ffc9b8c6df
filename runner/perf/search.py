"""mode=tune's search: a pipeline's fastest settings on this machine, measured on the real train op.

Each trial builds the pipeline with one knob changed from the best settings so far and measures training as the
bench does (runner.perf.measure): its timed windows are bracketed by windows of one reference bound, the model on a
constant batch with the starting settings' session, so every trial is scored on the same yardstick (the ratio of
its training rate to that bound around it) even when a trial changes TensorFlow's thread pools.

The search is guided by the start's stage attribution (runner.perf.stages): when the input limits, the pipeline's
own knobs come first (parallelism, then buffers); when the model or the shared CPU does, the thread pools. Each knob
is walked up its candidate values while a step gains more than MARGIN, then down; a knob that gains nothing costs
two trials. Passes over the knobs repeat while one moved the best, never measuring a setting twice. The search
stops before a trial would pass the budget, keeping time for the confirmation.

Then it confirms: the best trial, every trial within CONFIRM_WITHIN of it, the start and (for tf_data) the
reference arm, tf.data as it runs by default (BENCH_ARMS' "autotune"), measured first and not a candidate (its
settings may change the data order), are measured again in ``confirm_rounds`` paired rounds, their order rotating
from round to round. The winner is the candidate with the best mean ratio to the bound over the rounds; a winner
that the rounds do not tell from the start (paired t-test) is not named: the start is kept. The winner against the
start and against the reference is the mean of their per-round ratios, with its 95% interval.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from runner.config.fields import POOL
from runner.config.schema import RunnerConfig, keys_tagged
from runner.core.errors import RunnerError
from runner.core.stats import compare, summarize
from runner.core.system import cores
from runner.engine.model import Parts
from runner.perf.measure import bound_runner, measure_pipeline, window_figures
from runner.perf.stages import attribution, stage_rates

log = logging.getLogger("runner")
MARGIN = 0.03  # a step must gain this share to be kept: less is within the paired windows' noise
CONFIRM_WITHIN = 0.10  # trials within this share of the best's ratio are confirmed with it
CONFIRM_MOST = 5  # candidates confirmed at most: the best, the start and the closest others


@dataclass
class Trial:
    settings: dict  # every knob's value in this trial
    changed: str  # what it changed from the best so far ("start" for the first)
    examples_per_sec: float | None = None  # training, the median of its windows
    ratio: float | None = None  # to the reference bound: the median training window over the bound's around it
    secs: float = 0.0
    kept: bool = False
    error: str = ""


@dataclass
class Versus:
    """The winner against another setting over the confirmation rounds: the mean of the per-round ratios of their
    ratios to the bound, its 95% interval, and whether the rounds tell the two apart (paired t-test)."""

    ratio: float
    low: float
    high: float
    p: float
    rounds: int

    @property
    def distinguishable(self) -> bool:
        return self.p < 0.05

    def text(self) -> str:
        return (f"{self.ratio:.2f} x (95% interval {self.low:.2f}-{self.high:.2f}, {self.rounds} paired rounds, "
                f"p={self.p:.2g}{'' if self.distinguishable else ': not told from noise'})")


@dataclass
class Result:
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    start: Trial | None = None
    reference: Trial | None = None  # tf.data's own AUTOTUNE settings (tf_data), measured as a yardstick
    confirmed: dict = field(default_factory=dict)  # changed -> the ratios to the bound of each confirmation round
    candidate: str = ""  # the confirmed best by mean ratio (the winner unless not told from the start): its changes
    versus_start: Versus | None = None  # that candidate against the start
    versus_reference: Versus | None = None  # the winner against the reference
    limit: dict | None = None  # the start's attribution
    stopped_by_budget: bool = False
    secs: float = 0.0

    def as_dict(self) -> dict:
        return {"trials": [asdict(t) for t in self.trials], "best": asdict(self.best) if self.best else None,
                "start": asdict(self.start) if self.start else None,
                "reference": asdict(self.reference) if self.reference else None, "confirmed": self.confirmed,
                "candidate": self.candidate, "versus_start": asdict(self.versus_start) if self.versus_start else None,
                "versus_reference": asdict(self.versus_reference) if self.versus_reference else None,
                "limit": self.limit, "stopped_by_budget": self.stopped_by_budget, "secs": self.secs}


def thread_values() -> tuple[int, ...]:
    """Candidate sizes of a thread pool: 0 (TensorFlow's choice), then powers of two up to the cores."""
    n, values = cores(), [0, 1]
    while values[-1] * 2 <= n:
        values.append(values[-1] * 2)
    return tuple(dict.fromkeys([*values, n]))


def ordered(space: dict[str, tuple], limit: str) -> list[str]:
    """The knobs in the order the attribution suggests: the input's own first when it limits, else the pools."""
    pools = [k for k in space if k in keys_tagged(POOL)]
    own = [k for k in space if k not in keys_tagged(POOL)]
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
           budget_secs: float, grid: bool = False, result: Result | None = None, confirm_rounds: int = 0,
           reference: dict | None = None) -> Result:
    """Tunes the knobs of ``space`` ({key: candidate values}) from ``start`` ({key: value}) within the budget;
    ``grid``: every combination instead (the yardstick the guided search is judged by). ``reference``: settings
    measured beside the start as a yardstick, never a candidate. ``confirm_rounds`` > 1: the candidates confirmed
    in paired rounds before the winner is named. Trials go into ``result`` as they are measured, so a caller keeps
    them when a signal stops the search."""
    began = time.monotonic()
    result = Result() if result is None else result
    first = make_parts(start)
    with bound_runner(first, run) as bound_step:
        for _ in range(run.bench.warmup_steps):
            bound_step()
        trials = _Trials(make_parts, run, bound_step, result, began, budget_secs, confirm_rounds)
        best, measured = trials.measure(start, "start")
        if measured is None:
            raise RunnerError(f"mode=tune: the starting settings do not run: {best.error}")
        best.kept = True
        result.start = best
        stages = stage_rates(lambda: make_parts(start).pipeline, first.session_config, run.batch_size,
                             run.bench.windows, measured)
        result.limit = attribution(stages, measured, window_figures(trials.bound_windows), cores())
        log.info("start: %s limits (%s its costliest stage); knobs in that order: %s", result.limit["limit"],
                 result.limit["costliest_stage"], ", ".join(ordered(space, result.limit["limit"])))
        if reference is not None:
            result.reference, _ = trials.measure(reference, REFERENCE)
        result.best = (_grid if grid else _walk)(trials, space, start, best)
        result.best.kept = result.best.kept or grid
        if confirm_rounds > 1:
            _confirm(result, trials.ratio_of, confirm_rounds)
    result.secs = time.monotonic() - began
    return result


class _Trials:
    """A search's measurements: each trial on the real train op, paired with the one reference bound, kept in
    the result as it is measured; and the budget, with time kept for the confirmation's rounds."""

    def __init__(self, make_parts: Callable[[dict], Parts], run: RunnerConfig, bound_step: Callable[[], None],
                 result: Result, began: float, budget_secs: float, confirm_rounds: int):
        self.make_parts, self.run, self.bound_step, self.result = make_parts, run, bound_step, result
        self.began, self.budget_secs, self.confirm_rounds = began, budget_secs, confirm_rounds
        self.bound_windows: list = []
        self.slowest = 0.0

    def measure(self, settings: dict, changed: str) -> tuple[Trial, dict | None]:
        trial = Trial(dict(settings), changed)
        t0 = time.monotonic()
        try:
            measured = measure_pipeline(self.make_parts(settings), self.run, self.bound_step, self.bound_windows)
            trial.examples_per_sec = measured["train_examples_per_sec"]
            trial.ratio = measured["ratio_to_bound"]
        except RunnerError as err:  # a setting this machine cannot run (a constant past 2 GB): not a winner
            trial.error = str(err)
            measured = None
        trial.secs = time.monotonic() - t0
        self.slowest = max(self.slowest, trial.secs)
        self.result.trials.append(trial)
        log.info("trial %-3d %-44s %s", len(self.result.trials) - 1, changed,
                 f"{trial.examples_per_sec:,.1f} examples/sec, {trial.ratio:.3f} x the bound" if trial.ratio
                 else f"failed: {trial.error}")
        return trial, measured

    def ratio_of(self, settings: dict) -> float | None:
        """A confirmation round's measurement: the ratio to the bound alone (None: the setting does not run)."""
        try:
            return measure_pipeline(self.make_parts(settings), self.run, self.bound_step, [])["ratio_to_bound"]
        except RunnerError:
            return None

    def over_budget(self) -> bool:
        """A trial more would pass the budget, with the confirmation's rounds (3 settings each) kept; said in the
        result."""
        keep = self.confirm_rounds * 3 * self.slowest if self.confirm_rounds > 1 else 0
        if time.monotonic() - self.began + self.slowest + keep > self.budget_secs:
            self.result.stopped_by_budget = True
        return self.result.stopped_by_budget


def _grid(trials: _Trials, space: dict[str, tuple], start: dict, best: Trial) -> Trial:
    """Every combination, for judging the guided search against (tune.search=grid): the best by its ratio."""
    for values in itertools.product(*(_candidates(space[k], start[k]) for k in space)):
        settings = dict(zip(space, values))
        if settings == start:
            continue
        if trials.over_budget():
            break
        changed = " ".join(f"{k.split('.')[-1]}={v}" for k, v in settings.items() if v != start[k])
        trial, _ = trials.measure(settings, changed)
        if trial.ratio is not None and trial.ratio > best.ratio:
            best = trial
    return best


def _walk(trials: _Trials, space: dict[str, tuple], start: dict, best: Trial) -> Trial:
    """The guided search: each knob in the attribution's order, walked up its values while a step gains more
    than MARGIN, then down; the best kept. Passes over the knobs repeat while one moved the best (caching the
    decoded split changes which prefetch and parallelism are best), never measuring one setting twice."""
    seen = {_key(t.settings): t for t in trials.result.trials if t is not trials.result.reference}
    moved_in_pass = True
    while moved_in_pass and not trials.result.stopped_by_budget:
        moved_in_pass = False
        for key in ordered(space, trials.result.limit["limit"]):
            best, moved = _walk_knob(trials, seen, key, _candidates(space[key], best.settings[key]), best)
            moved_in_pass = moved_in_pass or moved
            if trials.result.stopped_by_budget:
                break
    return best


def _walk_knob(trials: _Trials, seen: dict, key: str, values: list, best: Trial) -> tuple[Trial, bool]:
    """One knob walked from the best's value: up while a step gains more than MARGIN, else down; a setting in
    ``seen`` is not measured again. Returns the best and whether it moved."""
    for step in (1, -1):
        i, moved = values.index(best.settings[key]), False
        while 0 <= i + step < len(values):
            i += step
            settings = {**best.settings, key: values[i]}
            trial = seen.get(_key(settings))
            if trial is None:
                if trials.over_budget():
                    break
                trial = seen[_key(settings)] = trials.measure(settings, f"{key}={values[i]}")[0]
            if trial.ratio is None or trial.ratio <= best.ratio * (1 + MARGIN):
                break
            trial.kept, best, moved = True, trial, True
        if moved or trials.result.stopped_by_budget:
            return best, moved
    return best, False


def _key(settings: dict) -> tuple:
    return tuple(sorted(settings.items()))


REFERENCE = "reference: tf.data's own AUTOTUNE"  # the reference trial's "changed"


def _confirm(result: Result, ratio_of: Callable[[dict], float | None], rounds: int) -> None:
    """Measures the candidates (the best, the start, the trials within CONFIRM_WITHIN of the best; at most
    CONFIRM_MOST) and the reference again in ``rounds`` rounds, their order rotating; names the winner by its mean
    ratio, unless the rounds do not tell it from the start, and says it against the start and the reference."""
    best, start = result.best, result.start
    near = sorted((t for t in result.trials if t.ratio is not None and t is not result.reference
                   and t.ratio >= best.ratio * (1 - CONFIRM_WITHIN)), key=lambda t: -t.ratio)
    candidates = list({id(t): t for t in [best, start, *near]}.values())[:CONFIRM_MOST]
    measured = candidates + ([result.reference] if result.reference and result.reference.ratio else [])
    log.info("confirming %d setting(s) in %d paired rounds: %s", len(measured), rounds,
             ", ".join(t.changed for t in measured))
    ratios: dict[int, list] = {id(t): [] for t in measured}
    for r in range(rounds):
        for trial in measured[r % len(measured):] + measured[:r % len(measured)]:
            ratios[id(trial)].append(ratio_of(trial.settings))
    usable = [t for t in candidates if None not in ratios[id(t)]]
    result.confirmed = {t.changed: ratios[id(t)] for t in measured}
    winner = max(usable, key=lambda t: summarize(ratios[id(t)]).mean) if usable else start
    result.candidate = " ".join(f"{k.split('.')[-1]}={v}" for k, v in winner.settings.items()
                                if v != start.settings.get(k)) or "start"  # what it changes from the start
    result.versus_start = _versus(ratios[id(winner)], ratios[id(start)]) if winner is not start else None
    if result.versus_start is not None and not (result.versus_start.distinguishable and result.versus_start.ratio > 1):
        log.info("confirmation: %s is not told from the start (%s); the start is kept", winner.changed,
                 result.versus_start.text())
        winner = start
    result.best = winner
    if result.reference is not None and None not in ratios.get(id(result.reference), [None]):
        result.versus_reference = _versus(ratios[id(winner)], ratios[id(result.reference)])


def _versus(a: list[float], b: list[float]) -> Versus:
    """a against b, round by round: the mean of the ratios a/b, its 95% interval; the paired t-test's p."""
    per_round = summarize([x / y for x, y in zip(a, b)])
    c = compare(dict(enumerate(a)), dict(enumerate(b)))
    return Versus(per_round.mean, per_round.low, per_round.high, c.p if c else 1.0, per_round.n)


def gain(best: Trial, start: Trial) -> str:
    """The winner against the start, in both figures: its ratio to the bound (what ranks trials: each trial's
    windows against the bound's around them, so a busy machine does not move it) and its raw examples/sec."""
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
    lines.extend(confirmation(result))
    return "\n".join(lines)


def confirmation(result: Result) -> list[str]:
    """What the confirmation rounds said of the winner: against the start and against tf.data's own settings."""
    if not result.confirmed:
        return []
    rounds = len(next(iter(result.confirmed.values())))
    vs = result.versus_start
    if vs is None:
        lines = [f"confirmed in {rounds} paired rounds: the start is the best of the settings confirmed"]
    elif result.best is result.start:
        lines = [f"confirmed in {rounds} paired rounds: {result.candidate} is not told from the start ({vs.text()} "
                 f"its ratio to the bound): the start is kept"]
    else:
        lines = [f"confirmed in {rounds} paired rounds: {result.candidate}, {vs.text()} the start's ratio to the "
                 f"bound"]
    if result.versus_reference is not None:
        lines.append(f"the winner against tf.data's own AUTOTUNE: {result.versus_reference.text()} its ratio to "
                     f"the bound")
    return lines
