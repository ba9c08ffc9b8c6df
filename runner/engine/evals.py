"""Evaluation ops: top-1 correct predictions per batch of a split, and one pass that prints the original's eval
lines."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.core.errors import RunnerError
from runner.core.signals import StopSignals
from runner.engine.model import Parts
from runner.pipelines.base import Batch, num_batches

log = logging.getLogger("runner")

SPLIT_TITLES = {"train": "Training Data Eval:", "validation": "Validation Data Eval:", "test": "Test Data Eval:"}


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
                before = set(v1.trainable_variables())
                logits = parts.model(batch.images, training=False, getter=getter)
                _check_shared(parts, before)
                hits = tf.math.in_top_k(targets=batch.labels, predictions=logits, k=1)
                correct = tf.reduce_sum(tf.cast(hits, tf.int64))
            count = tf.shape(batch.labels, out_type=tf.int64)[0]
        evals[split] = EvalOp(split, batch, correct, count, num_batches(batch.num_examples, batch_size))
    return evals


def _check_shared(parts: Parts, before: set) -> None:
    """An eval uses the trained variables: building the model again must create none (a model that makes its own
    variables in a model function, as Keras layers do, would be evaluated with a second, untrained copy)."""
    created = [v.name for v in v1.trainable_variables() if v not in before]
    if before and created:
        raise RunnerError(f"model={parts.names.get('model', '?')} made new variables when built again for evaluation "
                          f"({', '.join(created[:3])}{', ...' if len(created) > 3 else ''}), so it would be "
                          f"evaluated untrained: runner shares a model function's variables between training and "
                          f"evaluation by name, so it must create them with tf.compat.v1.get_variable; a model that "
                          f"makes its own (Keras layers) registers as a class, which runner builds once per graph "
                          f"(docs/packages.md)")


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
