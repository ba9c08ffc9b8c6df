"""mode=eval, as cifar10_eval: the latest checkpoint of a run, evaluated on the eval splits with that run's saved
config (and its moving averages, when it kept them). One pass by default; with eval_once=false, each new checkpoint
is evaluated as it appears, every eval_interval_secs, until SIGINT/SIGTERM."""
from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path

import tensorflow as tf

from runner.engine import Parts, build_evals, checkpoint_dir, run_eval, session
from runner.train import StopSignals

v1 = tf.compat.v1
log = logging.getLogger("runner")


def evaluate(parts: Parts, run_dir: str, batch_size: int, splits: list[str], moving_average_decay: float | None,
             once: bool = True, interval_secs: float = 300.0) -> dict | None:
    graph = tf.Graph()
    with graph.as_default():
        global_step = v1.train.get_or_create_global_step()
        evals = build_evals(parts, splits, batch_size)
        if moving_average_decay:  # restore each variable from its moving average
            saver = v1.train.Saver(v1.train.ExponentialMovingAverage(moving_average_decay).variables_to_restore())
        else:
            saver = v1.train.Saver()
    batches = [e.batch for e in evals.values()]
    last, out = None, None
    with StopSignals() as stop:
        while stop.signum is None:
            latest = tf.train.latest_checkpoint(str(checkpoint_dir(run_dir)))
            if latest != last or once:
                with session(graph, parts.session_config, batches, saver, run_dir, must_restore=True) as (sess, ckpt):
                    step = int(sess.run(global_step))
                    log.info("Evaluating %s (step %d%s)", ckpt, step, ", moving averages" if moving_average_decay
                             else "")
                    results = {split: run_eval(sess, op) for split, op in evals.items()}
                for split, result in results.items():
                    log.info("%s: precision @ 1 = %.3f (%s)", datetime.datetime.now(), result["precision"], split)
                out = {"checkpoint": ckpt, "step": step, "time": time.time(), "results": results}
                (Path(run_dir) / "eval.json").write_text(json.dumps(out, indent=2) + "\n")
                last = ckpt
            if once:
                break
            deadline = time.time() + interval_secs
            while stop.signum is None and time.time() < deadline:
                time.sleep(min(0.2, interval_secs))
    if stop.signum is not None:
        log.info("Stopped continuous evaluation of %s", run_dir)
    return out
