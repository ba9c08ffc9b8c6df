"""Profiling hooks: TensorFlow's profiler over chosen steps (profile=[first, last]), written for TensorBoard's
Profile tab and as a Chrome trace, and hardware.xla's report of what XLA compiled."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.engine.hooks import Clock

log = logging.getLogger("runner")
Hook: TypeAlias = v1.train.SessionRunHook
Args = v1.train.SessionRunArgs


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
