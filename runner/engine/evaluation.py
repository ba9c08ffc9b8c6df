"""The evaluation loop, as cifar10_eval's: the latest checkpoint of a run, evaluated on the eval splits (with its
moving averages, when it kept them). One pass by default; with eval_once=false, each new checkpoint
is evaluated as it appears, every eval_interval_secs, until SIGINT/SIGTERM (exit status 128 + signal)."""
from __future__ import annotations

import contextlib
import datetime
import logging
import time
from pathlib import Path

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.core.files import write_json
from runner.core.signals import Interrupted, StopSignals, signal_name
from runner.engine.checkpoints import latest_checkpoint, make_saver
from runner.engine.evals import build_evals, run_eval
from runner.engine.model import Parts
from runner.engine.session import session
from runner.engine.watch import best_checkpoint
from runner.ops.summaries import EVAL_DIR, file_writer, write_scalars

log = logging.getLogger("runner")


def evaluate(parts: Parts, run_dir: str, batch_size: int, splits: list[str], moving_average_decay: float | None,
             once: bool, interval_secs: float, which: str, until_step: int | None = None) -> dict | None:
    """Evaluates the latest checkpoint once, or (``once=False``) each new one until a signal; with
    ``until_step`` (a cluster's evaluator) it waits for the first checkpoint and ends after evaluating one of
    that step or later. ``which="best"``: the best checkpoint the run kept (checkpoint.keep_best), once."""
    best = best_checkpoint(run_dir) if which == "best" else None
    graph = tf.Graph()
    with graph.as_default():
        global_step = v1.train.get_or_create_global_step()
        evals = build_evals(parts, splits, batch_size)
        if moving_average_decay:  # restore each variable from its moving average
            saver = make_saver(var_list=v1.train.ExponentialMovingAverage(moving_average_decay).variables_to_restore())
        else:
            saver = make_saver()
        scaffold = v1.train.Scaffold(saver=saver)  # one for every checkpoint evaluated: no new ops each time
        writer = file_writer(Path(run_dir) / EVAL_DIR)  # RUN/eval/, beside training's evaluations
    batches = [e.batch for e in evals.values()]
    last, out = None, None
    with StopSignals() as stop, contextlib.closing(writer):
        try:
            while True:
                latest = best[0] if best else latest_checkpoint(run_dir)
                if (latest != last or once) and (latest or until_step is None):
                    out = _evaluate_checkpoint(graph, parts, batches, scaffold, run_dir, global_step, evals, stop,
                                               moving_average_decay, writer, best)
                    last = out["checkpoint"]
                if once or best or (until_step is not None and out and out["step"] >= until_step):
                    return out
                deadline = time.time() + interval_secs
                while time.time() < deadline:
                    stop.check()
                    time.sleep(min(0.2, interval_secs))
        except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
            if stop.signum is None:
                raise
        except Interrupted:
            pass
        stop.acknowledge()
        evaluated = f"; the last result ({out['checkpoint']}) is in eval.json" if out else ""
        raise Interrupted(f"{signal_name(stop.signum)}: evaluation of {run_dir} stopped{evaluated}", stop.signum)


def _evaluate_checkpoint(graph, parts: Parts, batches, scaffold, run_dir: str, global_step, evals,
                         stop: StopSignals, moving_average_decay: float | None, writer,
                         best: tuple[str, dict] | None) -> dict:
    """One pass of every eval split over the latest checkpoint (or the ``best`` one); writes eval.json and the
    precisions at the checkpoint's step to ``writer``."""
    with session(graph, parts.session_config, batches, scaffold.saver, run_dir, must_restore=True, stop=stop,
                 scaffold=scaffold, checkpoint=best[0] if best else None) as (sess, ckpt):
        step = int(sess.run(global_step))
        kept = f", the best by {best[1]['metric']}" if best else ""
        log.info("Evaluating %s (step %d%s%s)", ckpt, step, kept, ", moving averages" if moving_average_decay else "")
        results = {split: run_eval(sess, op, stop) for split, op in evals.items()}
    for split, result in results.items():
        log.info("%s: precision @ 1 = %.3f (%s)", datetime.datetime.now(), result["precision"], split)
    write_scalars(writer, step, **{f"precision/{split}": r["precision"] for split, r in results.items()})
    writer.flush()
    out = {"checkpoint": ckpt, "step": step, "time": time.time(), "results": results, "which": "best" if best else
           "latest"}
    write_json(Path(run_dir) / "eval.json", out)
    return out
