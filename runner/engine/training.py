"""Training: the graph for a run, then the loop with progress lines, summaries, checkpoints, evals, resume and
clean stops on SIGINT/SIGTERM. Writes checkpoints/, TensorBoard events, metrics.jsonl and summary.json."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.config.schema import CheckpointConfig, EarlyStoppingConfig, RecoveryConfig
from runner.core.files import write_json
from runner.core.results import TrainSummary
from runner.core.signals import Interrupted, StopSignals, signal_name
from runner.engine.checkpoints import checkpoint_dir, latest_checkpoint, make_saver, save
from runner.engine.evals import build_evals, run_eval
from runner.engine.graph import TrainGraph, build_train_graph
from runner.engine.hooks import (
    CheckpointEvalHook,
    Clock,
    ClockHook,
    DivergenceHook,
    FeedHook,
    Metrics,
    ProgressHook,
    Recovered,
    SummaryHook,
)
from runner.engine.model import Parts, count_parameters, moving_average_getter
from runner.engine.profile import TraceHook, XlaReportHook
from runner.engine.progress import Progress
from runner.engine.session import IN_PROCESS, SessionTarget, session
from runner.engine.watch import Watch
from runner.ops.summaries import EVAL_DIR, TrainingSummaries, file_writer, write_scalars

log = logging.getLogger("runner")


def _finished(sess, train_graph: TrainGraph, max_steps: int) -> bool:
    """Whether the cluster's global step has reached ``max_steps`` (read on the ps)."""
    try:
        return sess.run_step_fn(lambda step_context: step_context.session.run(train_graph.global_step)) >= max_steps
    except tf.errors.OpError:
        return False


@dataclass(frozen=True)
class TrainSettings:
    """What the training loop reads of a run's config: the batch, the steps and how often to log, summarize,
    checkpoint and evaluate (the config's keys of the same names)."""

    batch_size: int  # per tower
    seed: int
    max_steps: int
    log_every: int
    summary_every: int
    checkpoint_every: int
    keep_checkpoints: int
    eval_splits: list[str]
    moving_average_decay: float | None
    eval_moving_average: bool
    profile: list[int] | None
    progress: str
    log_style: str
    early_stopping: EarlyStoppingConfig
    checkpoint: CheckpointConfig
    recovery: RecoveryConfig

    @classmethod
    def of(cls, config: Any) -> TrainSettings:
        """The settings of a run's config (runner.config.schema.RunnerConfig)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclass
class _Built:
    """The graph of a run and what writes from it: evals, summaries, saver, event writers (chief only)."""

    train_graph: TrainGraph
    evals: dict
    summaries: TrainingSummaries | None  # None: the graph has none
    saver: v1.train.Saver
    weights_saver: v1.train.Saver | None  # every variable but the global step: recovery's restore
    num_params: int
    writer: Any
    eval_writer: Any


def _build(parts: Parts, run: TrainSettings, run_dir: Path, chief: bool, sharded: bool) -> _Built:
    train_graph = build_train_graph(parts, run.batch_size, run.seed, run.moving_average_decay)
    with train_graph.scope():
        getter = moving_average_getter(train_graph.ema) if train_graph.ema and run.eval_moving_average else None
        evals = build_evals(parts, run.eval_splits, run.batch_size, getter) if chief else {}
        weights = [v for v in v1.global_variables() if v.op.name != train_graph.global_step.op.name]
        return _Built(train_graph, evals, TrainingSummaries.of(train_graph.graph),
                      make_saver(max_to_keep=run.keep_checkpoints, sharded=sharded),
                      make_saver(var_list=weights) if run.recovery.max_trials else None, count_parameters(),
                      file_writer(run_dir, train_graph.graph) if chief else None,
                      file_writer(run_dir / EVAL_DIR) if evals else None)


def _evaluate(built: _Built, metrics: Metrics, final: dict, stop: StopSignals, watch: Watch, after: Callable | None,
              sess, step: int) -> None:
    """Every eval split at ``step``: its precision into ``final``, metrics.jsonl and the eval events; then the
    ``watch`` (the best checkpoint, early stopping) and ``after(step, results)`` (a search's trial, which may stop
    the run: its checkpoint is written)."""
    for split, op in built.evals.items():
        result = run_eval(sess, op, stop)
        final[split] = result["precision"]
        metrics.write(step, **result)
        write_scalars(built.eval_writer, step, **{f"precision/{split}": result["precision"]})
    built.writer.flush()
    if built.eval_writer is not None:
        built.eval_writer.flush()
    watch.after_eval(step, final)
    if after is not None:
        after(step, {"final_precision": dict(final), "steps": step})


def _before_the_end(after: Callable | None, clock: Clock, max_steps: int, per_step: int) -> Callable | None:
    """``after`` told the evals before the last step, with the training rate so far (examples_per_sec)."""
    if after is None:
        return None

    def told(step: int, results: dict) -> None:
        if step < max_steps:
            secs = clock.run_secs
            rate = (step - clock.first_step) * per_step / secs if secs else None
            after(step, {**results, "examples_per_sec": rate})

    return told


def _hooks(built: _Built, parts: Parts, run: TrainSettings, run_dir: Path, chief: bool, clock: Clock,
           metrics: Metrics, progress: Progress, evaluate: Callable, stop: StopSignals) -> list:
    """The loop's hooks, one concern each, in the order they run: the clock and the feeds first; the chief's
    summaries, checkpoints and evals; the profiler and XLA's report where asked."""
    graph = built.train_graph
    hooks = [ClockHook(clock, graph.global_step, graph.step_after), FeedHook(graph.batches),
             DivergenceHook(graph.loss, clock, checkpoint_dir(run_dir), run.recovery.loss_upper_bound,
                            run.recovery.max_trials, functools.partial(_restore_weights, built.weights_saver, run_dir),
                            metrics),
             ProgressHook(progress, graph.loss, graph.learning_rate, clock, metrics, run.log_every, run.max_steps,
                          graph.examples_per_step),
             v1.train.StopAtStepHook(last_step=run.max_steps)]
    if chief:
        hooks += [SummaryHook(built.summaries, built.writer, clock, run.summary_every, run.max_steps),
                  CheckpointEvalHook(lambda sess, step: save(built.saver, sess, run_dir, step), evaluate, clock,
                                     run.checkpoint_every, run.max_steps, lambda: stop.signum is not None,
                                     resumed=bool(latest_checkpoint(run_dir)))]
    trace = TraceHook(run_dir, run.profile[0], run.profile[-1], clock, log.info) if run.profile and chief else None
    if trace:
        hooks.append(trace)
    if parts.xla:
        hooks.append(XlaReportHook(graph.graph, log.info, clock, trace.active if trace else lambda step: False))
    return hooks


def _restore_weights(saver: v1.train.Saver | None, run_dir: Path, session) -> int:
    """The latest checkpoint's variables but the global step, restored in ``session``; that checkpoint's step."""
    path = latest_checkpoint(run_dir)
    assert saver is not None and path is not None  # the hook restores only with recovery on and a checkpoint
    saver.restore(session, path)
    return int(path.rsplit("-", 1)[1])


def _loop(sess, graph: TrainGraph, clock: Clock, max_steps: int, stop: StopSignals, chief: bool, watch: Watch
          ) -> None:
    try:
        while clock.step < max_steps and not sess.should_stop() and not watch.stopped:
            with contextlib.suppress(Recovered):  # a diverged step, its weights restored: the next step
                sess.run(graph.train_op)
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
        # A stop closed the input queues, or (sync replicas) the chief ended and closed the token queue this
        # worker waited on. Anything else is an input error: the session says which.
        if stop.signum is None and not (graph.sync and not chief and _finished(sess, graph, max_steps)):
            raise


def train(parts: Parts, run: TrainSettings, run_dir: str | Path, config: dict, task: SessionTarget = IN_PROCESS,
          extra_hooks: Sequence = (), after_eval: Callable[[int, dict], None] | None = None
          ) -> TrainSummary | None:
    """Trains to ``run.max_steps`` in a MonitoredSession whose hooks do the rest; ``run`` holds the run's settings
    (batch size, steps, how often to log, summarize, checkpoint and evaluate). On a cluster every worker runs this;
    only the chief writes (checkpoints, summaries, metrics, summary.json) and evaluates."""
    run_dir, chief = Path(run_dir), task.is_chief
    built = _build(parts, run, run_dir, chief, sharded=bool(task.target))
    metrics, clock, started = Metrics(run_dir, built.writer), Clock(), time.time()
    final: dict[str, float] = {}
    watch = Watch.of(run_dir, run.checkpoint.keep_best, run.early_stopping)
    with contextlib.ExitStack() as stack:
        for w in (built.writer, built.eval_writer):
            if w is not None:
                stack.callback(w.close)
        stop = stack.enter_context(StopSignals())
        progress = stack.enter_context(Progress(run.progress, run.max_steps, run.log_style))
        evaluate = functools.partial(_evaluate, built, metrics, final, stop, watch, _before_the_end(
            after_eval, clock, run.max_steps, built.train_graph.examples_per_step))
        hooks = [*_hooks(built, parts, run, run_dir, chief, clock, metrics, progress, evaluate, stop), *extra_hooks,
                 *built.train_graph.hooks(chief)]  # last: the other workers are released after the last checkpoint
        batches = built.train_graph.batches + [e.batch for e in built.evals.values()]
        sess, ckpt = stack.enter_context(session(built.train_graph.graph, parts.session_config, batches, built.saver,
                                                 run_dir, stop=stop, hooks=hooks, task=task))
        if ckpt:
            log.info("Resuming from %s at step %d", ckpt, clock.step)
        progress.start(clock.step)
        _loop(sess, built.train_graph, clock, run.max_steps, stop, chief, watch)
    if stop.signum is not None:
        stop.acknowledge()
        where = f"checkpoint saved in {checkpoint_dir(run_dir)}; " if chief else ""
        raise Interrupted(f"{signal_name(stop.signum)} at step {clock.step}: {where}rerun with run_dir={run_dir} "
                          f"to resume", stop.signum)
    if not chief:
        return None
    summary = _summary(built, parts, clock, final, time.time() - started, config, watch)
    write_json(run_dir / "summary.json", summary)
    log.info("Results in %s (summary.json, metrics.jsonl, checkpoints/, TensorBoard events)", run_dir)
    return summary


def _summary(built: _Built, parts: Parts, clock: Clock, final: dict, wall_time: float, config: dict, watch: Watch
             ) -> TrainSummary:
    """summary.json: the final precisions, the steps, the training rate, what ran, and what its evals decided."""
    train_time, trained_steps = clock.run_secs, clock.step - clock.first_step
    per_step = built.train_graph.examples_per_step
    names = parts.names
    return {
        "final_precision": final,
        "steps": clock.step,
        "steps_this_run": trained_steps,
        "examples_per_sec": trained_steps * per_step / train_time if train_time else None,
        "examples_per_step": per_step,
        "wall_time_sec": wall_time,
        "trainable_parameters": built.num_params,
        "pipeline": names["pipeline"], "dataset": names["dataset"], "model": names["model"],
        "trainer": names["trainer"],
        "devices": parts.devices,
        "config": config,
        "stopped_early": watch.stopped is not None,
        "early_stopping": watch.stopped,
        "best_checkpoint": watch.best,
    }
