"""The training graph's TensorBoard summaries, as the CIFAR-10 tutorial's: each loss term (cross-entropy, each
weight-decay term, the total) raw and as a moving average, the learning rate, histograms of every trainable variable
and of its gradient, and a few input images. Models add their own (activation histograms and sparsity)."""
from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

EVAL_DIR = "eval"  # RUN/eval/: the evaluations' event files, a run of their own beside training's, as cifar10_eval's
LOSS_TERMS = "runner_loss_terms"  # graph collection: the terms of the first tower's loss (runner.trainers.losses)
HISTOGRAMS, HISTOGRAM_TAGS = "runner_histograms", "runner_histogram_tags"  # graph collections: rows, tags


def _bucket_limits() -> np.ndarray:
    """TensorFlow's histogram buckets (HistogramSummary's, which TensorBoard's histograms show): right edges
    -DBL_MAX, -1e20..-1e-12, 0, 1e-12..1e20 growing by 10%, DBL_MAX."""
    positive = [1e-12]
    while positive[-1] * 1.1 < 1e20:
        positive.append(positive[-1] * 1.1)
    top = np.finfo(np.float64).max
    return np.array([-top, *(-v for v in reversed(positive)), 0.0, *positive, top])


LIMITS = _bucket_limits()
_N = (len(LIMITS) - 3) // 2  # positive finite edges


def histogram(tag: str, values: tf.Tensor) -> tf.Tensor:
    """A histogram tagged ``tag`` exactly, of ``values``' finite values (a NaN loss or an fp16 overflow step is
    for the run to report, not the summary), in TensorFlow's HistogramSummary's buckets. Counted by arithmetic on
    the exponent, four times faster than that op, whose binary search per value on one thread took 0.18 s of each
    summary step of the CIFAR-10 CNN; :class:`TrainingSummaries` makes the proto on the host. Returns
    ``[min, max, num, sum, sum_squares, count in bucket 0, ...]``."""
    x = tf.reshape(tf.cast(values, tf.float32), [-1])
    finite = tf.math.is_finite(x)
    x = tf.where(finite, x, tf.zeros_like(x))
    # How many 10% steps |x| is above 1e-12: a value's bucket is the first edge above it.
    steps = (tf.math.log(tf.maximum(tf.abs(x), 1e-13)) - math.log(1e-12)) / math.log(1.1)
    above = _N + 2 + tf.clip_by_value(tf.floor(steps) + 1, 0, _N)
    below = tf.clip_by_value(_N + 1 - tf.math.ceil(steps), 1, _N + 1)
    bucket = tf.where(finite, tf.cast(tf.where(x < 0, below, above), tf.int32), len(LIMITS))  # the last: dropped
    # bincount's own op with its size given (tf.math.bincount sizes it from the data, which XLA cannot compile)
    counts = tf.raw_ops.DenseBincount(input=bucket, size=len(LIMITS) + 1, weights=tf.zeros([0], tf.int32),
                                      binary_output=False)[:-1]
    x64, top = tf.cast(x, tf.float64), float(LIMITS[-1])
    stats = tf.stack([tf.reduce_min(tf.where(finite, x64, top)), tf.reduce_max(tf.where(finite, x64, -top)),
                      tf.reduce_sum(tf.cast(finite, tf.float64)), tf.reduce_sum(x64), tf.reduce_sum(tf.square(x64))])
    row = tf.concat([stats, tf.cast(counts, tf.float64)], 0)
    v1.add_to_collection(HISTOGRAMS, row)
    v1.add_to_collection(HISTOGRAM_TAGS, tf.constant(tag))
    return row


def histogram_proto(values: np.ndarray) -> v1.HistogramProto:
    """One :func:`histogram` row as TensorBoard reads them, encoded as HistogramSummary encodes them:
    each run of empty buckets one entry at the run's last edge."""
    counts = values[5:]
    keep = (counts > 0) | np.append(counts[1:] > 0, True)
    low, high, num, total, squares = values[:5].tolist()
    return v1.HistogramProto(min=low, max=high, num=num, sum=total, sum_squares=squares,
                             bucket_limit=LIMITS[keep].tolist(), bucket=counts[keep].tolist())


class TrainingSummaries:
    """A training graph's summaries as one fetch (the merged summary ops and the histograms' counts) and, from its
    result, the one Summary to write; None from :meth:`of` when the graph has none."""

    def __init__(self, merged: tf.Tensor | None, histograms: list[tf.Tensor], tags: list[str]):
        self.merged, self.histograms, self.tags = merged, histograms, tags

    @classmethod
    def of(cls, graph: tf.Graph) -> TrainingSummaries | None:
        with graph.as_default():
            merged = v1.summary.merge_all()
        histograms = graph.get_collection(HISTOGRAMS)
        tags = [tf.get_static_value(t).item().decode() for t in graph.get_collection(HISTOGRAM_TAGS)]
        return cls(merged, histograms, tags) if merged is not None or histograms else None

    @property
    def fetches(self) -> dict:
        return {"histograms": self.histograms, **({"merged": self.merged} if self.merged is not None else {})}

    def summary(self, results: dict) -> v1.Summary:
        summary = v1.Summary.FromString(results["merged"]) if "merged" in results else v1.Summary()
        for tag, values in zip(self.tags, results.get("histograms", [])):
            summary.value.add(tag=tag, histo=histogram_proto(values))
        return summary


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
