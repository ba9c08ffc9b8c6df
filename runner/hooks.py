"""The training loop's concerns, one SessionRunHook each, run by a tf.compat.v1.train.MonitoredSession.

:class:`Clock` is shared: :class:`ClockHook` (first in the list) sets the global step after each run and the time
spent in runs, and the hooks after it read them. Order matters: the NaN check comes before anything is written
for a step, the checkpoint before its eval.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tensorflow as tf

from runner.engine import merged_feed
from runner.errors import TrainingError
from runner.pipelines.base import Batch
from runner.summaries import write_scalars

v1 = tf.compat.v1
log = logging.getLogger("runner")
Hook = v1.train.SessionRunHook
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


class StartPipelines(Hook):
    """Starts the input pipelines once a session exists (preloaded's load, iterator initialization; the queue
    runners were started by the session under its Coordinator) and keeps that Coordinator, whose recorded
    exception is a failed input thread's error."""

    def __init__(self, batches: list[Batch]):
        self.starts: list[Callable] = []
        for b in batches:
            if b.on_session and b.on_session not in self.starts:
                self.starts.append(b.on_session)
        self.coord: v1.train.Coordinator | None = None

    def after_create_session(self, session, coord):
        self.coord = coord
        for start in self.starts:
            start(session)


class FeedHook(Hook):
    """feed_dict's feeding: each run of the loop gets the training placeholders' next values."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def before_run(self, run_context):
        return Args(None, feed_dict=merged_feed(self.batches))


class NanHook(Hook):
    """Stops the run on a loss that is NaN or infinite, before anything is written for that step."""

    def __init__(self, loss: tf.Tensor, clock: Clock, checkpoints: Path):
        self.loss, self.clock, self.checkpoints = loss, clock, checkpoints

    def before_run(self, run_context):
        return Args(self.loss)

    def after_run(self, run_context, run_values):
        if not math.isfinite(run_values.results):
            raise TrainingError(f"loss is {run_values.results} at step {self.clock.step}; nothing was saved from "
                                f"this step on (checkpoints in {self.checkpoints} are kept). Lower the learning "
                                f"rate (optimizer.lr) or check the input data.")


def _due(step: int, every: int, last: int) -> bool:
    """Whether ``step`` (the step about to run or just run) is one to act on: every ``every`` steps and the last."""
    return step % every == 0 or step >= last


class SummaryHook(Hook):
    """TensorBoard summaries every ``every`` steps and at the last one."""

    def __init__(self, summary_op, writer, clock: Clock, every: int, last: int):
        self.summary_op, self.writer, self.clock, self.every, self.last = summary_op, writer, clock, every, last
        self._want = False

    def before_run(self, run_context):
        self._want = self.summary_op is not None and _due(self.clock.step + 1, self.every, self.last)
        return Args(self.summary_op) if self._want else None

    def after_run(self, run_context, run_values):
        if self._want:
            self.writer.add_summary(run_values.results, self.clock.step)


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
        self._want = _due(self.clock.step + 1, self.every, self.last)
        return Args([self.loss, self.lr]) if self._want else None

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


class SignalHook(Hook):
    """SIGINT/SIGTERM: the loop stops after the current step; the signal also stops the session's Coordinator at
    once, which closes the input queues, so a step waiting for input returns."""

    def __init__(self, stop):
        self.stop = stop

    def after_create_session(self, session, coord):
        self.stop.on_stop(coord.request_stop)

    def after_run(self, run_context, run_values):
        if self.stop.signum is not None:
            run_context.request_stop()


class TraceHook(Hook):
    """profile=[first, last]: TensorFlow's profiler traces those steps (each marked as a step) into
    RUN/plugins/profile/ for TensorBoard's Profile tab; when it stops, the trace is also written as a Chrome trace
    (RUN/traces/steps_FIRST-LAST.trace.json: chrome://tracing, Perfetto), every op of every step on its thread."""

    def __init__(self, run_dir: Path, first: int, last: int, clock: Clock, say: Callable[[str], None]):
        self.run_dir, self.first, self.last, self.clock, self.say = run_dir, first, last, clock, say
        self.started_at: int | None = None
        self._step = None

    def active(self, step: int) -> bool:
        """Whether ``step`` is traced (nothing else may trace it: one profiler runs at a time)."""
        return self.first <= step <= self.last

    def before_run(self, run_context):
        step = self.clock.step + 1
        if self.started_at is None and self.active(step):  # a run resumed inside the range starts there
            tf.profiler.experimental.start(str(self.run_dir))
            self.started_at = step
        if self.started_at is not None:
            self._step = tf.profiler.experimental.Trace("train", step_num=step, _r=1)
            self._step.__enter__()
        return None

    def after_run(self, run_context, run_values):
        if self._step is not None:
            self._step.__exit__(None, None, None)
            self._step = None
        if self.started_at is not None and self.clock.step >= self.last:
            self._stop()

    def end(self, session):
        self._stop()  # a run that stopped inside the range keeps what was traced

    def _stop(self) -> None:
        if self.started_at is None:
            return
        first, last = self.started_at, min(self.clock.step, self.last)
        self.started_at = None
        tf.profiler.experimental.stop()
        profiles = sorted((self.run_dir / "plugins" / "profile").glob("*/*.xplane.pb"), key=lambda p: p.stat().st_mtime)
        out = self.run_dir / "traces" / f"steps_{first}-{last}.trace.json"
        if profiles and chrome_trace(profiles[-1], out):
            self.say(f"profile: steps {first}-{last} traced: TensorBoard's Profile tab ({profiles[-1].parent}) and "
                     f"{out}")


def chrome_trace(xplane: Path, out: Path) -> bool:
    """The profiler's trace of ``xplane`` (an .xplane.pb) written as Chrome trace JSON; False where this
    TensorFlow cannot convert it (TensorBoard's profiler plugin still reads the .xplane.pb)."""
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

        data, ok = plugin.xspace_to_tools_data([str(xplane)], "trace_viewer@")
    except (ImportError, AttributeError, RuntimeError) as err:
        log.warning("profile: no Chrome trace (%s); the profile is in %s", err, xplane.parent)
        return False
    if not ok or not data:
        log.warning("profile: no Chrome trace from %s; the profile is there", xplane)
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data if isinstance(data, bytes) else data.encode())
    return True


class XlaReportHook(Hook):
    """hardware.xla: traces the second step (the first compiles) and says once what XLA compiled and which ops of
    the step run outside it (input, summaries, ops XLA has no kernel for): they fall back to TensorFlow's own."""

    def __init__(self, graph: tf.Graph, say: Callable[[str], None], clock: Clock,
                 profiled: Callable[[int], bool] = lambda step: False):
        """``profiled(step)``: whether the profiler traces that step (then a later one is traced here)."""
        self.graph, self.say, self.clock, self.profiled = graph, say, clock, profiled
        self.runs, self.tracing, self.done = 0, False, False

    def before_run(self, run_context):
        self.runs += 1
        self.tracing = not self.done and self.runs >= 2 and not self.profiled(self.clock.step + 1)
        if self.tracing:
            return Args(fetches=None, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE))
        return None

    def after_run(self, run_context, run_values):
        if not self.tracing or run_values.run_metadata is None:
            return
        self.done = True
        names = {n.node_name.split(":")[0] for d in run_values.run_metadata.step_stats.dev_stats
                 for n in d.node_stats}
        clusters = {n.split("/")[0] for n in names if n.startswith("cluster_")}
        outside = set()
        for name in names - {n for n in names if n.startswith("cluster_")}:
            try:
                outside.add(self.graph.get_operation_by_name(name).type)
            except (KeyError, ValueError):
                pass  # a node TensorFlow added (_SOURCE, sends and receives)
        outside -= {"NoOp", "Identity", "Const", "VarHandleOp", "ReadVariableOp", "_Retval", "_Arg"}
        if not clusters:
            self.say("hardware.xla: XLA compiled nothing in this step; it runs as without XLA")
        else:
            self.say(f"hardware.xla: XLA compiled {len(clusters)} cluster(s) of the step; these ops run outside "
                     f"XLA, as without it: {', '.join(sorted(outside)) or 'none'}")
