"""One device: the loss of one batch, minimized by the optimizer."""
from __future__ import annotations

import tensorflow as tf

from runner.losses import total_loss
from runner.trainers import TRAINERS


@TRAINERS.register("single")
def single(model, batches, optimizer, global_step, devices):
    """Returns (loss, train_op) for ``batches[0]`` on ``devices[0]``."""
    (batch,) = batches
    with tf.device(devices[0]):
        logits = model(batch.images, training=True)
        loss = total_loss(logits, batch.labels)
        train_op = optimizer.minimize(loss, global_step=global_step)
    return loss, train_op
