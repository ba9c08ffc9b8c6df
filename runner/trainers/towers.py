"""Towers, as cifar10_multi_gpu_train: one model replica per device under name scope ``tower_i``, variables created
once on the variable device and shared, each tower's loss (with its own weight decay) and gradients computed on its
device, gradients averaged on the variable device and applied once. Summaries, loss terms and the model's update ops
(UPDATE_OPS) come from tower 0."""
from __future__ import annotations

import tensorflow as tf

from runner.ops.summaries import LOSS_TERMS
from runner.trainers import TRAINERS
from runner.trainers.base import pin_variables
from runner.trainers.losses import total_loss

v1 = tf.compat.v1


def average_gradients(tower_grads: list[list[tuple]]) -> list[tuple]:
    """[[(grad, var)] per tower] -> [(mean grad, var)], in the order of the first tower."""
    averaged = []
    for pairs in zip(*tower_grads):
        grads = [g for g, _ in pairs if g is not None]
        var = pairs[0][1]
        averaged.append((tf.add_n(grads) / len(grads) if grads else None, var))
    return averaged


@TRAINERS.register("towers")
def towers(model, batches, optimizer, global_step, devices, variable_device):
    """Returns (mean loss over towers, averaged gradients and variables, train op) for one batch per device."""
    summaries, terms = v1.get_collection_ref(v1.GraphKeys.SUMMARIES), v1.get_collection_ref(LOSS_TERMS)
    losses, tower_grads, updates = [], [], []
    for i, (batch, device) in enumerate(zip(batches, devices)):
        kept, kept_terms = len(summaries), len(terms)
        with v1.device(pin_variables(variable_device, device)), tf.name_scope(f"tower_{i}") as scope:
            logits = model(batch.images, training=True)
            loss = total_loss(logits, batch.labels, scope=scope)
            losses.append(loss)
            tower_grads.append(optimizer.compute_gradients(loss))
            if not i:  # the model's update ops (batch norm's statistics) of tower 0, as for the summaries
                updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS, scope)
        if i:  # summaries from tower 0 only
            del summaries[kept:]
            del terms[kept_terms:]
    with tf.device(variable_device), tf.control_dependencies(updates):
        grads = average_gradients(tower_grads)
        train_op = optimizer.apply_gradients(grads, global_step=global_step)
        loss = tf.add_n(losses) / len(losses)
    return loss, grads, train_op
