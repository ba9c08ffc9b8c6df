"""The one builder of a run's training graph: input batches per tower, model, loss, optimizer, global step, learning
rate and moving averages. Training and the benchmark (the bound and every pipeline) both build it here, so the
benchmark measures exactly the op that trains."""
from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.engine.model import Parts
from runner.ops.summaries import add_loss_summaries, add_training_summaries
from runner.pipelines.base import Batch, with_input_advance


@dataclass
class TrainGraph:
    graph: tf.Graph
    global_step: tf.Variable
    batches: list[Batch]  # one per tower
    examples_per_step: int  # examples in one global step (all towers; with sync replicas, all workers)
    learning_rate: tf.Tensor
    loss: tf.Tensor  # mean over towers, named "loss"
    train_op: tf.Operation  # one step: gradients applied, averages updated, the next batches prepared
    ema: v1.train.ExponentialMovingAverage | None  # of the trainable variables, when kept
    step_after: tf.Tensor  # the global step read after this step's update
    device_fn: Callable | None = None  # on a cluster: the replica device setter the graph was built under
    sync: v1.train.SyncReplicasOptimizer | None = None  # on a cluster with hardware.sync
    release: tf.Operation | None = None  # sync: tokens that let every worker finish its last step

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The graph as default, under the placement it was built with (for the ops a mode adds)."""
        with self.graph.as_default(), (v1.device(self.device_fn) if self.device_fn else contextlib.nullcontext()):
            yield

    def hooks(self, chief: bool) -> list:
        """The session hooks this graph needs: SyncReplicasOptimizer's, and on the chief the release of the other
        workers at the end."""
        if self.sync is None:
            return []
        # No tokens at the start: every worker's first step waits for the first update, which then holds one
        # gradient of each.
        return [self.sync.make_session_run_hook(chief, num_tokens=0),
                *([ReleaseWorkers(self.release)] if chief else [])]


class ReleaseWorkers(v1.train.SessionRunHook):
    """Sync training: when the chief ends, a token for every worker, so none waits for an update that will not
    come (each then sees the last global step and stops)."""

    def __init__(self, release: tf.Operation):
        self.release = release

    def end(self, session):
        try:
            session.run(self.release)
        except (tf.errors.CancelledError, tf.errors.OutOfRangeError):
            pass  # a stop closed the token queue: the workers waiting on it were released by that
        # The chief's aggregation thread still waits for gradients that will not come; closing the session cancels
        # it, which is the end of training, not an error to print.
        previous = threading.excepthook

        def quiet(args):
            if not (issubclass(args.exc_type, tf.errors.CancelledError)
                    and args.thread.name.startswith("QueueRunnerThread")):
                previous(args)

        threading.excepthook = quiet


def seeded(seed: int) -> None:
    """The graph's random ops and the process's Python and numpy generators seeded, as tf_keras.utils.set_random_seed
    does: Keras layers draw their ops' seeds from Python's generator, so a seed repeats their initial weights and
    dropout masks too."""
    v1.set_random_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def build_train_graph(parts: Parts, batch_size: int, seed: int, moving_average_decay: float | None,
                      make_batches: Callable[[], list[Batch]] | None = None) -> TrainGraph:
    """The training graph of a run, in a new graph. ``make_batches`` replaces the pipeline's training batches
    (the benchmark's bound feeds a constant batch per tower)."""
    graph = tf.Graph()
    replicas = parts.replicas
    device_fn = replicas.device_setter() if replicas else None
    with graph.as_default(), (v1.device(device_fn) if device_fn else contextlib.nullcontext()):
        seeded(seed)
        global_step = v1.train.get_or_create_global_step()
        with tf.device(parts.input_device):  # input work stays on the CPU (of this worker), as the tutorials'
            batches = make_batches() if make_batches else tower_batches(parts, batch_size)
        examples_per_step = batch_size * len(batches)
        if replicas and replicas.sync:  # a global step aggregates one step of every worker
            examples_per_step *= replicas.num_workers
        lr = parts.make_lr(global_step, parts.dataset.num_examples("train") / examples_per_step)
        optimizer = parts.make_optimizer(lr)
        sync = release = None
        if replicas and replicas.sync:  # one gradient per worker per step, averaged, applied once by the chief
            optimizer = sync = v1.train.SyncReplicasOptimizer(optimizer, replicas_to_aggregate=replicas.num_workers,
                                                              total_num_replicas=replicas.num_workers)
        loss, grads, train_op = parts.trainer(parts.model, batches, optimizer, global_step, parts.devices,
                                              parts.variable_device)
        loss = tf.identity(loss, name="loss")  # one name whatever the trainer, so checkpoints stay portable
        add_training_summaries(grads, lr, batches[0].images)
        # Sync replicas: the chief alone updates the averages, once per global step (after its step's update).
        averaging = not (sync and replicas is not None and not replicas.is_chief)
        train_op, ema = _with_averages(train_op, loss, global_step, moving_average_decay, averaging)
        train_op = with_input_advance(train_op, batches)
        with tf.control_dependencies([train_op]):
            step_after = tf.identity(global_step.read_value(), name="step_after")
        if sync and replicas is not None:
            release = sync.get_init_tokens_op(replicas.num_workers)
    return TrainGraph(graph, global_step, batches, examples_per_step, lr, loss, train_op, ema, step_after, device_fn,
                      sync, release)


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


def _with_averages(train_op, loss, global_step, decay: float | None, averaging: bool = True):
    """Adds the loss terms' moving averages (for summaries) and, with ``decay``, moving averages of the trainable
    variables updated after each step (num_updates = global step), as cifar10.train."""
    loss_averages_op = add_loss_summaries(loss)
    if not decay:
        return tf.group(train_op, loss_averages_op, name="train"), None
    ema = v1.train.ExponentialMovingAverage(decay, global_step)
    with tf.control_dependencies([train_op]):
        variables_averages_op = ema.apply(v1.trainable_variables())
    if not averaging:
        return tf.group(train_op, loss_averages_op, name="train"), ema
    return tf.group(train_op, loss_averages_op, variables_averages_op, name="train"), ema
