"""Training: the graph for a run, then the loop with progress lines, summaries, checkpoints, evals, resume and
clean stops on SIGINT/SIGTERM. Writes checkpoints/, TensorBoard events, metrics.jsonl and summary.json."""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from runner.datasets.files import write_json
from runner.engine import (
    CHECKPOINT_NAME,
    Parts,
    build_evals,
    checkpoint_dir,
    count_parameters,
    Task,
    latest_checkpoint,
    make_saver,
    moving_average_getter,
    run_eval,
    session,
)
from runner.errors import RunnerError, op_error_text
from runner.graph import build_train_graph
from runner.hooks import (CheckpointEvalHook, Clock, ClockHook, FeedHook, Metrics, NanHook, ProgressHook, SummaryHook,
                          TraceHook, XlaReportHook)
from runner.progress import Progress
from runner.signals import Interrupted, StopSignals
from runner.summaries import EVAL_DIR, file_writer, write_scalars
from runner.signals import name as signal_name

v1 = tf.compat.v1
log = logging.getLogger("runner")


@dataclass
class Settings:
    run_dir: str
    batch_size: int
    max_steps: int
    seed: int
    log_every: int  # steps between progress lines
    summary_every: int  # steps between TensorBoard summaries (histograms and images cost a step's time)
    checkpoint_every: int
    keep_checkpoints: int
    eval_splits: list[str]
    moving_average_decay: float | None = None  # keep averages of the trainable variables
    eval_moving_average: bool = True  # evaluate with them
    progress: str = "lines"  # auto | bar | lines
    log_style: str = "mnist"  # mnist | cifar10 (runner.progress)
    profile: tuple[int, int] | None = None  # trace these steps, first to last (runner.hooks.TraceHook)


def _save(saver: v1.train.Saver, sess: v1.Session, run_dir: Path, step: int) -> None:
    """Writes the checkpoint of ``step``; a full disk or a read-only dir is a one-line error (the checkpoints
    written before are kept: a checkpoint counts only once the state file names it)."""
    try:
        checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)  # a sharded (cluster) saver does not make it
        saver.save(sess, str(checkpoint_dir(run_dir) / CHECKPOINT_NAME), global_step=step)
    except tf.errors.OpError as err:
        raise RunnerError(f"cannot write the checkpoint of step {step} in {checkpoint_dir(run_dir)}: "
                          f"{op_error_text(err)}; free some space or make the run dir writable (the earlier "
                          f"checkpoints are kept)") from None


def _finished(sess, tg, max_steps: int) -> bool:
    """Whether the cluster's global step has reached ``max_steps`` (read on the ps)."""
    try:
        return sess.run_step_fn(lambda step_context: step_context.session.run(tg.global_step)) >= max_steps
    except tf.errors.OpError:
        return False


def train(parts: Parts, s: Settings, config: dict, task: Task = Task(), extra_hooks: Sequence = ()) -> dict | None:
    """Trains to ``s.max_steps`` in a MonitoredSession whose hooks do the rest. On a cluster every worker runs
    this; only the chief writes (checkpoints, summaries, metrics, summary.json) and evaluates."""
    run_dir = Path(s.run_dir)
    tg = build_train_graph(parts, s.batch_size, s.seed, s.moving_average_decay)
    chief = task.is_chief
    with tg.scope():
        getter = moving_average_getter(tg.ema) if tg.ema and s.eval_moving_average else None
        evals = build_evals(parts, s.eval_splits, s.batch_size, getter) if chief else {}
        summary_op = v1.summary.merge_all()
        saver = make_saver(max_to_keep=s.keep_checkpoints, sharded=bool(task.target))
        num_params = count_parameters()
        writer = file_writer(run_dir, tg.graph) if chief else None
        eval_writer = file_writer(run_dir / EVAL_DIR) if evals else None

    metrics = Metrics(run_dir, writer)
    final: dict = {}
    started = time.time()
    clock = Clock()

    def evaluate(sess, step: int) -> None:
        for split, op in evals.items():
            result = run_eval(sess, op, stop)
            final[split] = result["precision"]
            metrics.write(step, **result)
            write_scalars(eval_writer, step, **{f"precision/{split}": result["precision"]})
        writer.flush()
        if eval_writer is not None:
            eval_writer.flush()

    with contextlib.ExitStack() as stack:
        for w in (writer, eval_writer):
            if w is not None:
                stack.callback(w.close)
        stop = stack.enter_context(StopSignals())
        progress = stack.enter_context(Progress(s.progress, s.max_steps, s.log_style))
        hooks = [ClockHook(clock, tg.global_step, tg.step_after), FeedHook(tg.batches),
                 NanHook(tg.loss, clock, checkpoint_dir(run_dir)),
                 ProgressHook(progress, tg.loss, tg.learning_rate, clock, metrics, s.log_every, s.max_steps,
                              tg.examples_per_step),
                 v1.train.StopAtStepHook(last_step=s.max_steps)]
        if chief:
            hooks += [SummaryHook(summary_op, writer, clock, s.summary_every, s.max_steps),
                      CheckpointEvalHook(lambda sess, step: _save(saver, sess, run_dir, step), evaluate, clock,
                                         s.checkpoint_every, s.max_steps, lambda: stop.signum is not None,
                                         resumed=bool(latest_checkpoint(run_dir)))]
        trace = TraceHook(run_dir, *s.profile, clock, log.info) if s.profile and chief else None
        if trace:
            hooks.append(trace)
        if parts.xla:
            hooks.append(XlaReportHook(tg.graph, log.info, clock, trace.active if trace else lambda step: False))
        hooks += list(extra_hooks)
        hooks += tg.hooks(chief)  # last: at the end, the other workers are released after the last checkpoint
        all_batches = tg.batches + [e.batch for e in evals.values()]
        sess, ckpt = stack.enter_context(session(tg.graph, parts.session_config, all_batches, saver, run_dir,
                                                 stop=stop, hooks=hooks, task=task))
        if ckpt:
            log.info("Resuming from %s at step %d", ckpt, clock.step)
        progress.start(clock.step)
        try:
            while clock.step < s.max_steps and not sess.should_stop():
                sess.run(tg.train_op)
        except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
            # A stop closed the input queues, or (sync replicas) the chief ended and closed the token queue this
            # worker waited on. Anything else is an input error: the session says which.
            if stop.signum is None and not (tg.sync and not chief and _finished(sess, tg, s.max_steps)):
                raise
    if stop.signum is not None:
        stop.acknowledge()
        where = f"checkpoint saved in {checkpoint_dir(run_dir)}; " if chief else ""
        raise Interrupted(f"{signal_name(stop.signum)} at step {clock.step}: {where}rerun with run_dir={run_dir} "
                          f"to resume", stop.signum)
    if not chief:
        return None
    train_time, trained_steps = clock.run_secs, clock.step - clock.first_step
    summary = {
        "final_precision": final,
        "steps": clock.step,
        "steps_this_run": trained_steps,
        "examples_per_sec": trained_steps * tg.examples_per_step / train_time if train_time else None,
        "examples_per_step": tg.examples_per_step,
        "wall_time_sec": time.time() - started,
        "trainable_parameters": num_params,
        **parts.names,
        "devices": parts.devices,
        "config": config,
    }
    write_json(run_dir / "summary.json", summary)
    log.info("Results in %s (summary.json, metrics.jsonl, checkpoints/, TensorBoard events)", run_dir)
    return summary
