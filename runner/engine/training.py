"""Training: the graph for a run, then the loop with progress lines, summaries, checkpoints, evals, resume and
clean stops on SIGINT/SIGTERM. Writes checkpoints/, TensorBoard events, metrics.jsonl and summary.json."""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from runner.config.schema import RunnerConfig
from runner.core.files import write_json
from runner.engine.checkpoints import checkpoint_dir, latest_checkpoint, make_saver, save
from runner.engine.evals import build_evals, run_eval
from runner.engine.graph import TrainGraph, build_train_graph
from runner.engine.hooks import (CheckpointEvalHook, Clock, ClockHook, FeedHook, Metrics, NanHook, ProgressHook,
                                 SummaryHook)
from runner.engine.model import Parts, count_parameters, moving_average_getter
from runner.engine.profile import TraceHook, XlaReportHook
from runner.engine.session import IN_PROCESS, SessionTarget, session
from runner.engine.progress import Progress
from runner.core.signals import Interrupted, StopSignals, signal_name
from runner.ops.summaries import EVAL_DIR, TrainingSummaries, file_writer, write_scalars

v1 = tf.compat.v1
log = logging.getLogger("runner")


def _finished(sess, train_graph: TrainGraph, max_steps: int) -> bool:
    """Whether the cluster's global step has reached ``max_steps`` (read on the ps)."""
    try:
        return sess.run_step_fn(lambda step_context: step_context.session.run(train_graph.global_step)) >= max_steps
    except tf.errors.OpError:
        return False


def train(parts: Parts, run: RunnerConfig, run_dir: str | Path, config: dict, task: SessionTarget = IN_PROCESS,
          extra_hooks: Sequence = ()) -> dict | None:
    """Trains to ``run.max_steps`` in a MonitoredSession whose hooks do the rest; ``run`` holds the run's settings
    (batch size, steps, how often to log, summarize, checkpoint and evaluate). On a cluster every worker runs this;
    only the chief writes (checkpoints, summaries, metrics, summary.json) and evaluates."""
    run_dir = Path(run_dir)
    train_graph = build_train_graph(parts, run.batch_size, run.seed, run.moving_average_decay)
    chief = task.is_chief
    with train_graph.scope():
        getter = moving_average_getter(train_graph.ema) if train_graph.ema and run.eval_moving_average else None
        evals = build_evals(parts, run.eval_splits, run.batch_size, getter) if chief else {}
        summaries = TrainingSummaries.of(train_graph.graph)
        saver = make_saver(max_to_keep=run.keep_checkpoints, sharded=bool(task.target))
        num_params = count_parameters()
        writer = file_writer(run_dir, train_graph.graph) if chief else None
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
        progress = stack.enter_context(Progress(run.progress, run.max_steps, run.log_style))
        hooks = [ClockHook(clock, train_graph.global_step, train_graph.step_after), FeedHook(train_graph.batches),
                 NanHook(train_graph.loss, clock, checkpoint_dir(run_dir)),
                 ProgressHook(progress, train_graph.loss, train_graph.learning_rate, clock, metrics, run.log_every,
                              run.max_steps, train_graph.examples_per_step),
                 v1.train.StopAtStepHook(last_step=run.max_steps)]
        if chief:
            hooks += [SummaryHook(summaries, writer, clock, run.summary_every, run.max_steps),
                      CheckpointEvalHook(lambda sess, step: save(saver, sess, run_dir, step), evaluate, clock,
                                         run.checkpoint_every, run.max_steps, lambda: stop.signum is not None,
                                         resumed=bool(latest_checkpoint(run_dir)))]
        trace = TraceHook(run_dir, *run.profile, clock, log.info) if run.profile and chief else None
        if trace:
            hooks.append(trace)
        if parts.xla:
            profiled = trace.active if trace else lambda step: False
            hooks.append(XlaReportHook(train_graph.graph, log.info, clock, profiled))
        hooks += list(extra_hooks)
        hooks += train_graph.hooks(chief)  # last: at the end, the other workers are released after the last checkpoint
        all_batches = train_graph.batches + [e.batch for e in evals.values()]
        sess, ckpt = stack.enter_context(session(train_graph.graph, parts.session_config, all_batches, saver, run_dir,
                                                 stop=stop, hooks=hooks, task=task))
        if ckpt:
            log.info("Resuming from %s at step %d", ckpt, clock.step)
        progress.start(clock.step)
        try:
            while clock.step < run.max_steps and not sess.should_stop():
                sess.run(train_graph.train_op)
        except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
            # A stop closed the input queues, or (sync replicas) the chief ended and closed the token queue this
            # worker waited on. Anything else is an input error: the session says which.
            if stop.signum is None and not (train_graph.sync and not chief
                                            and _finished(sess, train_graph, run.max_steps)):
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
        "examples_per_sec": trained_steps * train_graph.examples_per_step / train_time if train_time else None,
        "examples_per_step": train_graph.examples_per_step,
        "wall_time_sec": time.time() - started,
        "trainable_parameters": num_params,
        **parts.names,
        "devices": parts.devices,
        "config": config,
    }
    write_json(run_dir / "summary.json", summary)
    log.info("Results in %s (summary.json, metrics.jsonl, checkpoints/, TensorBoard events)", run_dir)
    return summary
