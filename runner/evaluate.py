"""mode=eval: the latest checkpoint of a run, evaluated on the eval splits with that run's saved config."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import tensorflow as tf

from runner.engine import Parts, build_evals, run_eval, session

v1 = tf.compat.v1
log = logging.getLogger("runner")


def evaluate(parts: Parts, run_dir: str, batch_size: int, splits: list[str]) -> dict:
    graph = tf.Graph()
    with graph.as_default():
        global_step = v1.train.get_or_create_global_step()
        evals = build_evals(parts, splits, batch_size)
        saver = v1.train.Saver()
    with session(graph, parts.session_config, [e.batch for e in evals.values()], saver, run_dir,
                 must_restore=True) as (sess, ckpt):
        step = int(sess.run(global_step))
        log.info("Evaluating %s (step %d)", ckpt, step)
        results = {split: run_eval(sess, op) for split, op in evals.items()}
    out = {"checkpoint": ckpt, "step": step, "time": time.time(), "results": results}
    (Path(run_dir) / "eval.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
