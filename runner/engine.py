"""The graph-mode engine shared by training and evaluation: shared model variables, eval ops, and sessions that
initialize or restore variables, load pipelines and run queue runners under a Coordinator."""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from runner.errors import ConfigError, DataError, RunnerError, op_error_text
from runner.pipelines.base import Batch, num_batches
from runner.signals import StopSignals

v1 = tf.compat.v1
log = logging.getLogger("runner")

SPLIT_TITLES = {"train": "Training Data Eval:", "validation": "Validation Data Eval:", "test": "Test Data Eval:"}


@dataclass
class Parts:
    """The built parts of a run; only runner.build reads the config to make them."""

    dataset: Any
    pipeline: Any
    model: Callable[..., tf.Tensor]  # (images, training) -> logits, variables shared between calls
    trainer: Callable
    names: dict[str, str]  # the registry names of the parts: dataset, pipeline, model, trainer
    make_lr: Callable  # (global_step, steps_per_epoch) -> learning-rate tensor
    make_optimizer: Callable  # learning rate -> tf.compat.v1.train.Optimizer
    devices: list[str]  # one tower per device
    variable_device: str
    session_config: v1.ConfigProto
    input_device: str = "/cpu:0"  # where input pipelines run (a cluster worker's own CPU)
    replicas: Any = None  # runner.cluster.Replicas: this process's place in a cluster, or None
    xla: bool = False  # hardware.xla: the session auto-clusters for XLA


def shared_model(fn: Callable, num_classes: int, params: dict, precision: str) -> Callable[..., tf.Tensor]:
    """Wraps a registered model so every call (towers, eval) shares one set of variables and computes in
    ``precision`` (runner.precision). ``getter`` (a variable_scope custom getter) lets evaluation read other values,
    such as moving averages."""
    from runner.precision import in_precision

    fn = in_precision(fn, precision)

    def model(images: tf.Tensor, training: bool, getter: Callable | None = None) -> tf.Tensor:
        with v1.variable_scope(v1.get_variable_scope(), reuse=v1.AUTO_REUSE, custom_getter=getter):
            return fn(images, num_classes=num_classes, training=training, **params)

    return model


def moving_average_getter(ema: v1.train.ExponentialMovingAverage) -> Callable:
    """A custom getter that hands out each variable's moving average (the variable itself if it has none)."""

    def average_getter(getter, name, *args, **kwargs):  # TensorFlow passes the next getter as ``getter``
        var = getter(name, *args, **kwargs)
        average = ema.average(var)
        return var if average is None else average

    return average_getter


def count_parameters() -> int:
    return int(sum(np.prod(v.shape.as_list()) for v in v1.trainable_variables()))


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalOp:
    split: str
    batch: Batch
    correct: tf.Tensor  # correct top-1 predictions in one batch
    count: tf.Tensor  # examples in that batch
    steps: int  # batches per pass: every example once


def build_evals(parts: Parts, splits: list[str], batch_size: int, getter: Callable | None = None
                ) -> dict[str, EvalOp]:
    evals = {}
    for split in splits:
        with tf.name_scope(f"eval_{split}"):
            with tf.device(parts.input_device):
                batch = parts.pipeline.build(split, batch_size, training=False)
            with tf.device(parts.devices[0]):
                logits = parts.model(batch.images, training=False, getter=getter)
                hits = tf.math.in_top_k(targets=batch.labels, predictions=logits, k=1)
                correct = tf.reduce_sum(tf.cast(hits, tf.int64))
            count = tf.shape(batch.labels, out_type=tf.int64)[0]
        evals[split] = EvalOp(split, batch, correct, count, num_batches(batch.num_examples, batch_size))
    return evals


def run_eval(sess: v1.Session, op: EvalOp, stop: StopSignals | None = None) -> dict:
    """One pass over the split; prints the original's eval lines and returns the counts. A stop signal ends the
    pass between batches (raising Interrupted)."""
    correct = total = 0
    for _ in range(op.steps):
        if stop:
            stop.check()
        c, n = sess.run([op.correct, op.count], op.batch.feed() if op.batch.feed else None)
        correct += int(c)
        total += int(n)
    if total != op.batch.num_examples:
        raise RunnerError(f"eval of {op.split} saw {total} examples, expected {op.batch.num_examples}")
    precision = correct / total
    log.info(SPLIT_TITLES[op.split])
    log.info("  Num examples: %d  Num correct: %d  Precision @ 1: %0.04f", total, correct, precision)
    return {"split": op.split, "num_examples": total, "num_correct": correct, "precision": precision}


def with_input_advance(train_op: tf.Operation, batches: list[Batch]) -> tf.Operation:
    """The train op, grouped with the ops that prepare each batch's next batch (prefetching pipelines)."""
    advances = [b.advance for b in batches if b.advance is not None]
    return tf.group(train_op, *advances) if advances else train_op


def merged_feed(batches: list[Batch]) -> dict | None:
    feeds = [b.feed() for b in batches if b.feed]
    return {k: v for feed in feeds for k, v in feed.items()} if feeds else None


# ---------------------------------------------------------------------------------------------- sessions
CHECKPOINT_NAME = "model.ckpt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def make_saver(**kwargs) -> v1.train.Saver:
    """A Saver whose state file holds paths relative to the run dir, so a moved or copied run dir is whole."""
    return v1.train.Saver(save_relative_paths=True, **kwargs)


def _checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints in run_dir/checkpoints, oldest first. The state file says which are complete (it
    is rewritten after each save); its paths are read as names in this dir, whatever dir wrote them."""
    directory = checkpoint_dir(run_dir)
    state = tf.train.get_checkpoint_state(str(directory))
    names = [Path(p).name for p in state.all_model_checkpoint_paths] if state else []
    found = [directory / n for n in names if Path(str(directory / n) + ".index").exists()]
    if found:
        return found
    # No usable state file (lost, or from an older layout): the checkpoints whose index exists, by step.
    steps = [int(m[1]) for p in directory.glob(f"{CHECKPOINT_NAME}-*.index")
             if (m := re.fullmatch(rf"{re.escape(CHECKPOINT_NAME)}-(\d+)\.index", p.name))]
    return [directory / f"{CHECKPOINT_NAME}-{step}" for step in sorted(steps)]


def latest_checkpoint(run_dir: str | Path) -> str | None:
    found = _checkpoints(run_dir)
    return str(found[-1]) if found else None


@dataclass
class Task:
    """Where a process's session runs: its own in-process runtime, or a task of a cluster (a Server's target).
    Only the chief initializes and restores; the others wait for it."""

    target: str = ""
    is_chief: bool = True
    wait_secs: float = 1800.0  # a worker waits this long for the chief to initialize the variables


@contextlib.contextmanager
def session(graph: tf.Graph, config: v1.ConfigProto | None, batches: list[Batch], saver: v1.train.Saver | None = None,
            run_dir: str | Path | None = None, must_restore: bool = False, stop: StopSignals | None = None,
            hooks: Sequence[v1.train.SessionRunHook] = (), task: Task = Task(),
            scaffold: v1.train.Scaffold | None = None) -> Iterator[tuple[v1.train.MonitoredSession, str | None]]:
    """A MonitoredSession on ``graph``: the chief restores the latest checkpoint of run_dir (or initializes), a
    worker waits for the chief; then the queue runners start under the session's Coordinator and the pipelines of
    ``batches`` start (:class:`runner.hooks.StartPipelines`). Without a saver nothing is restored. A stop signal
    stops the Coordinator at once, which closes the input queues, so a step waiting for input returns. TensorFlow
    errors become one-line errors naming the input or the checkpoint."""
    from runner.hooks import SignalHook, StartPipelines

    ckpt = latest_checkpoint(run_dir) if saver is not None and task.is_chief else None
    if must_restore and not ckpt:
        raise RunnerError(f"no checkpoint in {checkpoint_dir(run_dir)}; train first "
                          f"(python -m runner run_dir={run_dir}) or point run_dir at a trained run")
    start = StartPipelines(batches)
    hooks = [start, *hooks] + ([SignalHook(stop)] if stop else [])
    with graph.as_default():  # the compat.v1 session APIs require the graph to be the default one
        scaffold = scaffold or v1.train.Scaffold(saver=saver or v1.train.Saver(allow_empty=True))
        if task.is_chief:
            creator = v1.train.ChiefSessionCreator(scaffold, task.target, config, checkpoint_filename_with_path=ckpt)
        else:
            creator = _WorkerSessionCreator(scaffold, task.target, config, task.wait_secs)
        if ckpt:
            saver.recover_last_checkpoints([str(p) for p in _checkpoints(run_dir)])
        # Errors are said inside the session (MonitoredSession would take an OutOfRangeError for the end of the
        # input) and around it (closing it re-raises a failed input thread's error).
        with _errors(stop, start, ckpt, run_dir):
            with v1.train.MonitoredSession(creator, hooks, stop_grace_period_secs=STOP_GRACE_SECS) as sess:
                with _errors(stop, start, ckpt, run_dir):
                    yield sess, ckpt
                    check_input_threads(start)  # a failed reader thread ends the loop like a stop; say why


STOP_GRACE_SECS = 10  # input threads get this long to end when a session closes
READY_POLL_SECS = 0.5  # how often a worker looks whether the chief has initialized the variables


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
def _errors(stop: StopSignals | None, start, ckpt: str | None, run_dir) -> Iterator[None]:
    """TensorFlow's errors in a session, said as what they mean for the run."""
    try:
        yield
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError) as err:
        if stop and stop.signum is not None:  # the stop closed the queues
            stop.check()
        check_input_threads(start)
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
        check_input_threads(start)
        raise RunnerError(f"TensorFlow stopped the run: {type(err).__name__}: {op_error_text(err)}") from None


def check_input_threads(start) -> None:
    """Raises a failed input thread's error (recorded by the session's Coordinator) as a DataError."""
    coord = start.coord
    if coord is None or not coord.should_stop():
        return
    try:
        coord.raise_requested_exception()
    except tf.errors.OpError as err:
        raise DataError(f"an input thread failed: {type(err).__name__}: {op_error_text(err)}") from None


