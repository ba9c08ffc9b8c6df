"""One device: the loss of one batch, minimized by the optimizer."""
from __future__ import annotations

import tensorflow as tf

from runner.trainers import TRAINERS
from runner.trainers.base import pin_variables
from runner.trainers.losses import total_loss

v1 = tf.compat.v1


@TRAINERS.register("single")
def single(model, batches, optimizer, global_step, devices, variable_device):
    """Returns (loss, gradients and variables, train op) for ``batches[0]`` on ``devices[0]`` (variables there
    too)."""
    (batch,) = batches
    with v1.device(pin_variables(variable_device, devices[0])):
        logits = model(batch.images, training=True)
        loss = total_loss(logits, batch.labels)
        grads = optimizer.compute_gradients(loss)
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):  # e.g. batch norm's statistics
            train_op = optimizer.apply_gradients(grads, global_step=global_step)
    return loss, grads, train_op
