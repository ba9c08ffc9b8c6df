"""Sessions shared by training, evaluation and the bench: a MonitoredSession that initializes or restores the
variables (or, on a cluster's other workers, waits for the chief), starts the input pipelines and the queue runners
under a Coordinator, stops at once on a signal, and says TensorFlow's errors as what they mean for the run."""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.core.closing import close_soon
from runner.core.errors import ConfigError, DataError, RunnerError, op_error_text
from runner.core.signals import StopSignals
from runner.engine.checkpoints import checkpoint_dir, checkpoints, latest_checkpoint
from runner.pipelines.base import Batch, check_unchanged

log = logging.getLogger("runner")


@dataclass(frozen=True)
class SessionTarget:
    """Where a process's session runs: its own in-process runtime, or a task of a cluster (a Server's target).
    Only the chief initializes and restores; the others wait for it."""

    target: str = ""
    is_chief: bool = True
    wait_secs: float = float("inf")  # how long another worker waits for the chief (hardware.wait_secs)


IN_PROCESS = SessionTarget()


@contextlib.contextmanager
def session(graph: tf.Graph, config: v1.ConfigProto | None, batches: list[Batch], saver: v1.train.Saver | None = None,
            run_dir: str | Path | None = None, must_restore: bool = False, stop: StopSignals | None = None,
            hooks: Sequence[v1.train.SessionRunHook] = (), task: SessionTarget = IN_PROCESS,
            scaffold: v1.train.Scaffold | None = None, checkpoint: str | None = None
            ) -> Iterator[tuple[v1.train.MonitoredSession, str | None]]:
    """A MonitoredSession on ``graph``: the chief restores the latest checkpoint of run_dir (or initializes), a
    worker waits for the chief; then the queue runners start under the session's Coordinator and the pipelines of
    ``batches`` start (:class:`StartPipelines`). Without a saver nothing is restored. A stop signal
    stops the Coordinator at once, which closes the input queues, so a step waiting for input returns; a data file
    changing under the run stops it too (:class:`WatchFiles`). TensorFlow errors become one-line errors naming the
    input or the checkpoint. ``checkpoint``: the one to restore instead of the latest (an eval of the best)."""
    ckpt = checkpoint or (latest_checkpoint(run_dir) if saver is not None and run_dir is not None and task.is_chief
                          else None)
    if must_restore and not ckpt:
        raise RunnerError(f"no checkpoint in {checkpoint_dir(run_dir or '.')}; train first "
                          f"(python -m runner run_dir={run_dir}) or point run_dir at a trained run")
    start = StartPipelines(batches)
    hooks = [start, WatchFiles(graph), *hooks] + ([SignalHook(stop)] if stop else [])
    with graph.as_default():  # the compat.v1 session APIs require the graph to be the default one
        scaffold = scaffold or v1.train.Scaffold(saver=saver or v1.train.Saver(allow_empty=True))
        if task.is_chief:
            creator = v1.train.ChiefSessionCreator(scaffold, task.target, config, checkpoint_filename_with_path=ckpt)
        else:
            creator = _WorkerSessionCreator(scaffold, task.target, config, task.wait_secs)
        creator = _QuickClose(creator)
        if ckpt and saver is not None and run_dir is not None and checkpoint is None:
            saver.recover_last_checkpoints([str(p) for p in checkpoints(run_dir)])
        # Errors are said inside the session (MonitoredSession would take an OutOfRangeError for the end of the
        # input) and around it (closing it re-raises a failed input thread's error).
        with _errors(graph, stop, start, ckpt, run_dir):
            with v1.train.MonitoredSession(creator, hooks, stop_grace_period_secs=INPUT_GRACE_SECS) as sess:
                with _errors(graph, stop, start, ckpt, run_dir):
                    yield sess, ckpt
                    check_input_threads(start, graph)  # a failed reader thread ends the loop like a stop; say why


INPUT_GRACE_SECS = 10  # input threads get this long to end when a session closes
READY_POLL_SECS = 0.5  # how often a worker looks whether the chief has initialized the variables


class _QuickClose(v1.train.SessionCreator):
    """A session creator whose sessions close without holding up the run (:func:`close_soon`)."""

    def __init__(self, inner: v1.train.SessionCreator):
        self.inner = inner

    def create_session(self):
        sess = self.inner.create_session()
        if type(sess) is v1.Session:
            sess.__class__ = _QuickClosing
        return sess


class _QuickClosing(v1.Session):
    """A session whose close (MonitoredSession's last step, after its hooks) is :func:`close_soon`. Collected
    without having been closed, it closes in place, as any session does: a thread started by a garbage
    collection can wait forever for a lock the collected thread holds."""

    def close(self):
        if getattr(self, "_closing_in_place", False):
            super().close()
        else:
            close_soon(super().close)

    def __del__(self):
        self._closing_in_place = True
        super().__del__()


class _WorkerSessionCreator(v1.train.SessionCreator):
    """WorkerSessionCreator, but looking every READY_POLL_SECS (not every 30 s) whether the chief is done."""

    def __init__(self, scaffold: v1.train.Scaffold, master: str, config, max_wait_secs: float):
        self.scaffold, self.master, self.config, self.max_wait_secs = scaffold, master, config, max_wait_secs

    def create_session(self):
        self.scaffold.finalize()
        manager = v1.train.SessionManager(
            local_init_op=self.scaffold.local_init_op, local_init_feed_dict=self.scaffold.local_init_feed_dict,
            ready_op=self.scaffold.ready_op, ready_for_local_init_op=self.scaffold.ready_for_local_init_op,
            graph=tf.compat.v1.get_default_graph(), recovery_wait_secs=READY_POLL_SECS)
        return manager.wait_for_session(self.master, config=self.config, max_wait_secs=self.max_wait_secs)


@contextlib.contextmanager
def _errors(graph: tf.Graph, stop: StopSignals | None, start, ckpt: str | None, run_dir) -> Iterator[None]:
    """TensorFlow's errors in a session, said as what they mean for the run: first, whether a data file changed
    under it (a truncated file fails in the reader, or in a later op, with another error on each pipeline)."""
    try:
        try:
            yield
        except tf.errors.OpError:
            check_unchanged(graph)
            raise
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError) as err:
        if stop and stop.signum is not None:  # the stop closed the queues
            stop.check()
        check_input_threads(start, graph)
        raise DataError(f"the input ran out of data ({op_error_text(err)}); check that the split's files "
                        f"hold the records the dataset expects (dataset.data_dir)") from None
    except (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as err:
        if ckpt and start.coord is None:  # the session never started: the checkpoint did not restore
            raise ConfigError(f"{ckpt} does not fit the model this config builds ({op_error_text(err)}); the run "
                              f"in {run_dir} was trained with another model, optimizer or data shape. Use its own "
                              f"config (.hydra/config.yaml) or another run_dir.") from None
        if isinstance(err, tf.errors.InvalidArgumentError):
            raise RunnerError(f"TensorFlow stopped the run: {type(err).__name__}: {op_error_text(err)}") from None
        raise DataError(f"input data cannot be read: {op_error_text(err)}") from None
    except tf.errors.OpError as err:  # e.g. a record file truncated while the run reads it
        check_input_threads(start, graph)
        raise RunnerError(f"TensorFlow stopped the run: {type(err).__name__}: {op_error_text(err)}") from None


class WatchFiles(v1.train.SessionRunHook):
    """Stops the run within seconds when a data file its pipelines read changes under it, naming the file: a
    look every WATCH_SECS, or less often when looking takes long (many files), so it costs at most 2% of the time."""

    def __init__(self, graph: tf.Graph):
        self.graph = graph
        self._next = 0.0

    def after_run(self, run_context, run_values):
        now = time.monotonic()
        if now >= self._next:
            check_unchanged(self.graph)
            self._next = now + max(WATCH_SECS, 50 * (time.monotonic() - now))


WATCH_SECS = 2.0


def check_input_threads(start, graph: tf.Graph) -> None:
    """Raises a failed input thread's error (recorded by the session's Coordinator) as a DataError, naming the data
    file that changed under the run if that is why."""
    coord = start.coord
    if coord is None or not coord.should_stop():
        return
    try:
        coord.raise_requested_exception()
    except tf.errors.OpError as err:
        check_unchanged(graph)
        raise DataError(f"an input thread failed: {type(err).__name__}: {op_error_text(err)}") from None


class StartPipelines(v1.train.SessionRunHook):
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


class SignalHook(v1.train.SessionRunHook):
    """SIGINT/SIGTERM: the loop stops after the current step; the signal also stops the session's Coordinator at
    once, which closes the input queues, so a step waiting for input returns."""

    def __init__(self, stop):
        self.stop = stop

    def after_create_session(self, session, coord):
        self.stop.on_stop(coord.request_stop)

    def after_run(self, run_context, run_values):
        if self.stop.signum is not None:
            run_context.request_stop()
