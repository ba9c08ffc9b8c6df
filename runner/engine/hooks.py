"""The training loop's concerns, one SessionRunHook each, run by a tf.compat.v1.train.MonitoredSession.

:class:`Clock` is shared: :class:`ClockHook` (first in the list) sets the global step after each run and the time
spent in runs, and the hooks after it read them. Order matters: the NaN check comes before anything is written
for a step, the checkpoint before its eval. (The session's own hooks, starting the pipelines and stopping on a
signal, are in session.py; profiling in profile.py.)
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.core.errors import TrainingError
from runner.ops.summaries import TrainingSummaries, write_scalars
from runner.pipelines.base import Batch, merged_feed

log = logging.getLogger("runner")
Hook: TypeAlias = v1.train.SessionRunHook
Args = v1.train.SessionRunArgs


@dataclass
class Clock:
    step: int = 0  # the global step after the last run
    first_step: int = 0  # the global step when the session was created
    run_secs: float = 0.0  # time inside training runs (feeding included), evals excluded


class ClockHook(Hook):
    """Keeps :class:`Clock`: ``step_after`` is the global step read after the step's update."""

    def __init__(self, clock: Clock, global_step: tf.Tensor, step_after: tf.Tensor):
        self.clock, self.global_step, self.step_after = clock, global_step, step_after
        self._t0 = 0.0

    def after_create_session(self, session, coord):
        self.clock.step = self.clock.first_step = int(session.run(self.global_step))

    def before_run(self, run_context):
        self._t0 = time.perf_counter()
        return Args(self.step_after)

    def after_run(self, run_context, run_values):
        self.clock.run_secs += time.perf_counter() - self._t0
        self.clock.step = int(run_values.results)


class FeedHook(Hook):
    """feed_dict's feeding: each run of the loop gets the training placeholders' next values."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def before_run(self, run_context):
        return Args(None, feed_dict=merged_feed(self.batches))


class Recovered(Exception):
    """A diverged step whose weights were restored: the step's other hooks are skipped and the loop goes on."""


class DivergenceHook(Hook):
    """A loss that is NaN or infinite (or above ``bound``) is a diverged step, caught before anything is written for
    it. With ``max_trials`` recoveries left and a checkpoint written, ``restore(session)`` puts back the last
    checkpoint's weights (its step returned) and training goes on from the next step with the next batches (the
    global step and the input are not rewound), said in one line and in metrics.jsonl; otherwise the run stops,
    saying what is kept."""

    def __init__(self, loss: tf.Tensor, clock: Clock, checkpoints: Path, bound: float | None = None,
                 max_trials: int = 0, restore: Callable | None = None, metrics: Metrics | None = None):
        self.loss, self.clock, self.checkpoints, self.bound = loss, clock, checkpoints, bound
        self.max_trials, self.restore, self.metrics = max_trials, restore, metrics
        self.recoveries = 0

    def before_run(self, run_context):
        return Args(self.loss)

    def after_run(self, run_context, run_values):
        loss, step = run_values.results, self.clock.step
        if math.isfinite(loss) and (self.bound is None or loss <= self.bound):
            return
        what = (f"loss is {loss}" if not math.isfinite(loss) else
                f"loss {loss:.4g} is above recovery.loss_upper_bound={self.bound:g}")
        saved = any(self.checkpoints.glob("*.index"))
        if self.recoveries < self.max_trials and saved and self.restore is not None:
            restored = self.restore(run_context.session)
            self.recoveries += 1
            log.warning("%s at step %d: the weights of the checkpoint of step %d restored; training goes on from "
                        "step %d with the next batches (recovery %d of %d)", what, step, restored, step,
                        self.recoveries, self.max_trials)
            if self.metrics is not None:
                self.metrics.write(step, recovery=self.recoveries, restored_step=restored, reason=what)
            raise Recovered(what)
        kept = (f"the checkpoints in {self.checkpoints} are kept" if saved
                else "no checkpoint was written before it")
        tried = f" after {self.recoveries} recoveries (recovery.max_trials)" if self.max_trials else ""
        raise TrainingError(f"{what} at step {step}{tried}; nothing was saved from this step on ({kept}). Lower the "
                            f"learning rate (optimizer.lr) or check the input data"
                            + ("" if self.max_trials else ", or let the run recover: recovery.max_trials=N") + ".")


def _due(step: int, every: int, last: int) -> bool:
    """Whether ``step`` (the step about to run or just run) is one to act on: every ``every`` steps and the last."""
    return step % every == 0 or step >= last


class SummaryHook(Hook):
    """TensorBoard summaries at the session's first step (the starting weights, as TensorFlow's SummarySaverHook;
    it also prepares the session for this set of fetches before any step is timed), every ``every`` steps and at the
    last."""

    def __init__(self, summaries: TrainingSummaries | None, writer, clock: Clock, every: int, last: int):
        self.summaries, self.writer, self.clock, self.every, self.last = summaries, writer, clock, every, last
        self._want = self._first = False

    def after_create_session(self, session, coord):
        self._first = True

    def before_run(self, run_context):
        due = self._first or _due(self.clock.step + 1, self.every, self.last)
        self._want, self._first = self.summaries is not None and due, False
        return Args(self.summaries.fetches) if self._want else None

    def after_run(self, run_context, run_values):
        if self._want:
            self.writer.add_summary(self.summaries.summary(run_values.results), self.clock.step)


class Metrics:
    """metrics.jsonl lines plus TensorBoard scalars; without a writer (a cluster's other workers) nothing."""

    def __init__(self, run_dir: Path, writer: v1.summary.FileWriter | None):
        self.path = run_dir / "metrics.jsonl"
        self.writer = writer

    def write(self, step: int, **values) -> None:
        if self.writer is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")

    def scalars(self, step: int, **values: float) -> None:
        if self.writer is not None:
            write_scalars(self.writer, step, **values)


class ProgressHook(Hook):
    """The progress line (or bar) every ``every`` steps and at the last: loss, time per step and examples/sec
    over the steps since the previous line, counting training runs only."""

    def __init__(self, progress, loss, learning_rate, clock: Clock, metrics: Metrics, every: int, last: int,
                 examples_per_step: int):
        """``examples_per_step``: per global step; on an asynchronous cluster each worker's step is one, so the
        rate counts every worker's examples."""
        self.progress, self.loss, self.lr, self.clock = progress, loss, learning_rate, clock
        self.metrics, self.every, self.last, self.examples_per_step = metrics, every, last, examples_per_step
        self._want = False
        self._window = (0.0, 0)  # run_secs and global step at the previous line

    def after_create_session(self, session, coord):
        self._window = (self.clock.run_secs, self.clock.step)

    def before_run(self, run_context):
        # Fetched at every step, though read only at a line's: each new set of fetches costs the session a new
        # preparation of the graph (0.3 s on the CIFAR-10 CNN), and the loss is fetched anyway (NanHook).
        self._want = _due(self.clock.step + 1, self.every, self.last)
        return Args([self.loss, self.lr])

    def after_run(self, run_context, run_values):
        self.progress.step()
        if not self._want:
            return
        loss, lr = (float(v) for v in run_values.results)
        secs, steps = self.clock.run_secs - self._window[0], self.clock.step - self._window[1]
        self._window = (self.clock.run_secs, self.clock.step)
        eps = steps * self.examples_per_step / secs
        self.progress.report(self.clock.step, loss, secs / max(steps, 1), eps)
        self.metrics.scalars(self.clock.step, examples_per_sec=eps)
        self.metrics.write(self.clock.step, loss=loss, learning_rate=lr, examples_per_sec=eps)


class CheckpointEvalHook(Hook):
    """A checkpoint every ``every`` steps and at the last, each followed by ``evaluate(session, step)``. At the end
    of the session: the last step's checkpoint and eval if they were not made (a resumed run at its end still
    reports its precisions); after a stop signal only the checkpoint."""

    def __init__(self, save: Callable, evaluate: Callable, clock: Clock, every: int, last: int,
                 stopping: Callable[[], bool], resumed: bool):
        self.save, self.evaluate, self.clock = save, evaluate, clock
        self.every, self.last, self.stopping = every, last, stopping
        self.resumed = resumed
        self.saved_at: int | None = None
        self.evaluated = False

    def after_create_session(self, session, coord):
        self.saved_at = self.clock.step if self.resumed else None
        self._next = (self.clock.step // self.every + 1) * self.every

    def after_run(self, run_context, run_values):
        step = self.clock.step
        if step >= self._next or step >= self.last:
            self._next = (step // self.every + 1) * self.every
            self._checkpoint_and_eval(run_context.session)

    def _checkpoint_and_eval(self, session) -> None:
        self.save(session, self.clock.step)
        self.saved_at = self.clock.step
        self.evaluate(session, self.clock.step)
        self.evaluated = True

    def end(self, session):
        if self.stopping():
            if self.saved_at != self.clock.step:
                self.save(session, self.clock.step)
                self.saved_at = self.clock.step
        elif self.saved_at != self.clock.step or not self.evaluated:
            self._checkpoint_and_eval(session)
