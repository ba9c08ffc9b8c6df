"""The one builder of a run's training graph: input batches per tower, model, loss, optimizer, global step, learning
rate and moving averages. Training and the benchmark (the bound and every pipeline) both build it here, so the
benchmark measures exactly the op that trains."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from runner.engine import Parts, with_input_advance
from runner.pipelines.base import Batch

v1 = tf.compat.v1


@dataclass
class TrainGraph:
    graph: tf.Graph
    global_step: tf.Variable
    batches: list[Batch]  # one per tower
    examples_per_step: int
    learning_rate: tf.Tensor
    loss: tf.Tensor  # mean over towers, named "loss"
    train_op: tf.Operation  # one step: gradients applied, averages updated, the next batches prepared
    ema: v1.train.ExponentialMovingAverage | None  # of the trainable variables, when kept


def build_train_graph(parts: Parts, batch_size: int, seed: int, moving_average_decay: float | None,
                      make_batches: Callable[[], list[Batch]] | None = None) -> TrainGraph:
    """The training graph of a run, in a new graph. ``make_batches`` replaces the pipeline's training batches
    (the benchmark's bound feeds a constant batch per tower)."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        global_step = v1.train.get_or_create_global_step()
        with tf.device("/cpu:0"):  # input work stays on the CPU, as the tutorials'
            batches = make_batches() if make_batches else tower_batches(parts, batch_size)
        examples_per_step = batch_size * len(batches)
        lr = parts.make_lr(global_step, batches[0].num_examples / examples_per_step)
        loss, train_op = parts.trainer(parts.model, batches, parts.make_optimizer(lr), global_step, parts.devices,
                                       parts.variable_device)
        loss = tf.identity(loss, name="loss")  # one name whatever the trainer, so checkpoints stay portable
        train_op, ema = _with_averages(train_op, loss, global_step, moving_average_decay)
        train_op = with_input_advance(train_op, batches)
    return TrainGraph(graph, global_step, batches, examples_per_step, lr, loss, train_op, ema)


def tower_batches(parts: Parts, batch_size: int) -> list[Batch]:
    """One training batch of ``batch_size`` per tower, from one input pipeline: one reader set and shuffle queue
    (or one tf.data stream, one feed) makes towers x batch_size examples a step, and each tower takes its own
    slice, as cifar10_multi_gpu_train's towers dequeue from one queue."""
    n = len(parts.devices)
    batch = parts.pipeline.build("train", batch_size * n, training=True)
    if n == 1:
        return [batch]
    images, labels = tf.split(batch.images, n), tf.split(batch.labels, n)
    first = dataclasses.replace(batch, images=images[0], labels=labels[0])  # drives the pipeline for all towers
    return [first] + [Batch(images[i], labels[i], batch.num_examples) for i in range(1, n)]


def _with_averages(train_op, loss, global_step, decay: float | None):
    """Adds the loss's moving average (for summaries) and, with ``decay``, moving averages of the trainable
    variables updated after each step (num_updates = global step), as cifar10.train."""
    loss_averages = v1.train.ExponentialMovingAverage(0.9, name="avg")
    loss_averages_op = loss_averages.apply([loss])
    v1.summary.scalar("loss/raw", loss)
    v1.summary.scalar("loss/average", loss_averages.average(loss))
    if not decay:
        return tf.group(train_op, loss_averages_op, name="train"), None
    ema = v1.train.ExponentialMovingAverage(decay, global_step)
    with tf.control_dependencies([train_op]):
        variables_averages_op = ema.apply(v1.trainable_variables())
    return tf.group(train_op, loss_averages_op, variables_averages_op, name="train"), ema
