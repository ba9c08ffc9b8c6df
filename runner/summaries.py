"""The training graph's TensorBoard summaries, as the CIFAR-10 tutorial's: each loss term (cross-entropy, each
weight-decay term, the total) raw and as a moving average, the learning rate, histograms of every trainable variable
and of its gradient, and a few input images. Models add their own (activation histograms and sparsity)."""
from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import tensorflow as tf

v1 = tf.compat.v1

EVAL_DIR = "eval"  # RUN/eval/: the evaluations' event files, a run of their own beside training's, as cifar10_eval's
LOSS_TERMS = "runner_loss_terms"  # graph collection: the terms of the first tower's loss (runner.losses)


def histogram(tag: str, values: tf.Tensor) -> tf.Tensor:
    """A histogram summary tagged ``tag`` exactly, of the finite values (TensorFlow's histogram op fails a whole
    step on one NaN or inf, and a NaN loss or an fp16 overflow step is for the run to report, not the summary)."""
    values = tf.reshape(tf.cast(values, tf.float32), [-1])
    return _collected(tf.raw_ops.HistogramSummary(tag=tag, values=tf.boolean_mask(values, tf.math.is_finite(values))))


def scalar(tag: str, value: tf.Tensor) -> tf.Tensor:
    """A scalar summary tagged ``tag`` exactly (tf.summary.scalar makes its tag an op name: ``conv1/weights``
    would become ``conv1/weights_1`` beside the variable of that name, ``x (raw)`` ``x__raw_``)."""
    return _collected(tf.raw_ops.ScalarSummary(tags=tag, values=tf.cast(value, tf.float32)))


def _collected(summary: tf.Tensor) -> tf.Tensor:
    v1.add_to_collection(v1.GraphKeys.SUMMARIES, summary)
    return summary


def _term_name(tensor: tf.Tensor) -> str:
    """``tower_0/local3/weight_loss`` -> ``local3/weight_loss``."""
    return re.sub(r"^tower_\d+/", "", tensor.op.name)


def add_loss_summaries(loss: tf.Tensor) -> tf.Operation:
    """``loss/<term> (raw)`` and ``loss/<term>`` (its moving average, decay 0.9) for each term of the loss and for
    the loss trained (``total``); returns the op that updates the averages, to run with each step."""
    terms = {_term_name(t): t for t in v1.get_collection(LOSS_TERMS)}
    if len(terms) == 1:  # cross-entropy alone: the total says it
        terms = {}
    terms["total"] = loss
    averages = v1.train.ExponentialMovingAverage(0.9, name="avg")
    update = averages.apply(list(terms.values()))
    for name, term in terms.items():
        scalar(f"loss/{name} (raw)", term)
        scalar(f"loss/{name}", averages.average(term))
    return update


def add_training_summaries(grads_and_vars: list[tuple], learning_rate: tf.Tensor, images: tf.Tensor) -> None:
    """Histograms of the trainable variables and their gradients, the learning rate, up to three input images."""
    for grad, var in grads_and_vars:
        if grad is not None:
            histogram(f"{var.op.name}/gradients", grad)
    for var in v1.trainable_variables():
        histogram(var.op.name, var)
    scalar("learning_rate", learning_rate)
    if len(images.shape) == 4 and images.shape[-1] in (1, 3):
        v1.summary.image("images", images, max_outputs=3)


_writers = itertools.count()


def file_writer(logdir: str | Path, graph: tf.Graph | None = None) -> v1.summary.FileWriter:
    """A FileWriter whose event file no other writer can take: TensorFlow names the file by the second and the host
    only, so a training run and a `mode=eval` writing RUN/eval/ in the same second would share one name and one
    would replace the other's events. The process id and a counter tell them apart."""
    return v1.summary.FileWriter(str(logdir), graph, filename_suffix=f".{os.getpid()}.{next(_writers)}")


def write_scalars(writer: v1.summary.FileWriter, step: int, **values: float) -> None:
    """Scalars computed outside the graph (examples/sec, eval precisions) as one summary at ``step``."""
    writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]), step)
