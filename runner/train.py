"""Training: the graph for a run, then the loop with progress lines, summaries, checkpoints, evals, resume and
clean stops on SIGINT/SIGTERM. Writes checkpoints/, TensorBoard events, metrics.jsonl and summary.json."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from runner.datasets.files import write_json
from runner.engine import (
    CHECKPOINT_NAME,
    Parts,
    build_evals,
    checkpoint_dir,
    count_parameters,
    make_saver,
    merged_feed,
    moving_average_getter,
    op_error_text,
    run_eval,
    session,
)
from runner.errors import RunnerError, TrainingError
from runner.graph import build_train_graph
from runner.progress import Progress
from runner.signals import Interrupted, StopSignals
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


class Metrics:
    """metrics.jsonl lines plus TensorBoard scalars."""

    def __init__(self, run_dir: Path, writer: v1.summary.FileWriter):
        self.path = run_dir / "metrics.jsonl"
        self.writer = writer

    def write(self, step: int, **values) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")

    def scalars(self, step: int, **values: float) -> None:
        self.writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]),
                                step)


def _save(saver: v1.train.Saver, sess: v1.Session, run_dir: Path, step: int) -> None:
    """Writes the checkpoint of ``step``; a full disk or a read-only dir is a one-line error (the checkpoints
    written before are kept: a checkpoint counts only once the state file names it)."""
    try:
        saver.save(sess, str(checkpoint_dir(run_dir) / CHECKPOINT_NAME), global_step=step)
    except tf.errors.OpError as err:
        raise RunnerError(f"cannot write the checkpoint of step {step} in {checkpoint_dir(run_dir)}: "
                          f"{op_error_text(err)}; free some space or make the run dir writable (the earlier "
                          f"checkpoints are kept)") from None


def train(parts: Parts, s: Settings, config: dict) -> dict:
    run_dir = Path(s.run_dir)
    tg = build_train_graph(parts, s.batch_size, s.seed, s.moving_average_decay)
    graph, global_step, batches, lr, loss, train_op, ema = (tg.graph, tg.global_step, tg.batches, tg.learning_rate,
                                                            tg.loss, tg.train_op, tg.ema)
    examples_per_step = tg.examples_per_step
    with graph.as_default():
        getter = moving_average_getter(ema) if ema and s.eval_moving_average else None
        evals = build_evals(parts, s.eval_splits, s.batch_size, getter)
        v1.summary.scalar("learning_rate", lr)
        if len(batches[0].images.shape) == 4 and batches[0].images.shape[-1] in (1, 3):
            v1.summary.image("images", batches[0].images, max_outputs=3)
        summary_op = v1.summary.merge_all()
        no_summary = tf.no_op()
        saver = make_saver(max_to_keep=s.keep_checkpoints)
        num_params = count_parameters()
        writer = v1.summary.FileWriter(str(run_dir), graph)

    all_batches = batches + [e.batch for e in evals.values()]
    metrics = Metrics(run_dir, writer)
    final: dict = {}
    started = time.time()
    train_time, trained_steps = 0.0, 0
    try:
        with contextlib.ExitStack() as stack:
            stop = stack.enter_context(StopSignals())
            sess, ckpt = stack.enter_context(session(graph, parts.session_config, all_batches, saver, run_dir,
                                                     stop=stop))
            step = int(sess.run(global_step))
            if ckpt:
                log.info("Resuming from %s at step %d", ckpt, step)
            progress = stack.enter_context(Progress(s.progress, step, s.max_steps))
            saved_at = step if ckpt else None

            def checkpoint_and_eval() -> None:
                nonlocal saved_at
                _save(saver, sess, run_dir, step)
                saved_at = step
                for split, op in evals.items():
                    result = run_eval(sess, op, stop)
                    final[split] = result["precision"]
                    metrics.write(step, **result)
                    metrics.scalars(step, **{f"precision/{split}": result["precision"]})
                writer.flush()

            window_start, window_steps = time.time(), 0
            try:
                while step < s.max_steps:
                    stop.check()
                    log_now = (step + 1) % s.log_every == 0 or step + 1 == s.max_steps
                    summarize_now = (step + 1) % s.summary_every == 0 or step + 1 == s.max_steps
                    fetches = [train_op, loss, lr, summary_op if summarize_now else no_summary]
                    t0 = time.time()
                    _, loss_value, lr_value, summary = sess.run(fetches, merged_feed(batches))
                    train_time += time.time() - t0
                    step += 1
                    trained_steps += 1
                    window_steps += 1
                    progress.step()
                    if not math.isfinite(loss_value):
                        raise TrainingError(f"loss is {loss_value} at step {step}; nothing was saved from this step "
                                            f"on (checkpoints in {checkpoint_dir(run_dir)} are kept). Lower the "
                                            f"learning rate (optimizer.lr) or check the input data.")
                    if summarize_now:
                        writer.add_summary(summary, step)
                    if log_now:
                        elapsed = time.time() - window_start
                        eps = window_steps * examples_per_step / elapsed
                        progress.report(step, loss_value, elapsed / window_steps, eps)
                        metrics.scalars(step, examples_per_sec=eps)
                        metrics.write(step, loss=float(loss_value), learning_rate=float(lr_value),
                                      examples_per_sec=eps)
                    if step % s.checkpoint_every == 0 or step == s.max_steps:
                        eval_started = time.time()
                        checkpoint_and_eval()
                        window_start += time.time() - eval_started  # examples/sec counts training time only
                    if log_now:
                        window_start, window_steps = time.time(), 0
                if saved_at != step or not final:  # resumed at or past max_steps: still report the precisions
                    checkpoint_and_eval()
            except (Interrupted, tf.errors.OutOfRangeError, tf.errors.CancelledError):
                if stop.signum is None:  # an input error, not a stop: the session reports it
                    raise
                stop.acknowledge()
                if saved_at != step:
                    _save(saver, sess, run_dir, step)
                raise Interrupted(f"{signal_name(stop.signum)} at step {step}: checkpoint saved in "
                                  f"{checkpoint_dir(run_dir)}; rerun with run_dir={run_dir} to resume",
                                  stop.signum) from None
    finally:
        writer.close()

    summary = {
        "final_precision": final,
        "steps": step,
        "steps_this_run": trained_steps,
        "examples_per_sec": trained_steps * examples_per_step / train_time if train_time else None,
        "examples_per_step": examples_per_step,
        "wall_time_sec": time.time() - started,
        "trainable_parameters": num_params,
        **parts.names,
        "devices": parts.devices,
        "config": config,
    }
    write_json(run_dir / "summary.json", summary)
    log.info("Results in %s (summary.json, metrics.jsonl, checkpoints/, TensorBoard events)", run_dir)
    return summary
