"""Optimizers and learning-rate schedules, by the names of conf/optimizer/*.yaml and conf/schedule/*.yaml (whose
values they take: none is repeated here)."""
from __future__ import annotations

import tensorflow as tf

from runner.core.registry import Registry

v1 = tf.compat.v1
OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(learning_rate):
    return v1.train.GradientDescentOptimizer(learning_rate)


@OPTIMIZERS.register("momentum")
def momentum(learning_rate, momentum: float, use_nesterov: bool):
    return v1.train.MomentumOptimizer(learning_rate, momentum, use_nesterov=use_nesterov)


@OPTIMIZERS.register("adam")
def adam(learning_rate, beta1: float, beta2: float, epsilon: float):
    return v1.train.AdamOptimizer(learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)


@SCHEDULES.register("constant")
def constant(lr: float, global_step, steps_per_epoch: float):
    return tf.constant(lr, tf.float32, name="schedule")


@SCHEDULES.register("exponential_decay")
def exponential_decay(lr: float, global_step, steps_per_epoch: float, decay_epochs: float, decay_rate: float,
                      staircase: bool):
    decay_steps = max(1, int(steps_per_epoch * decay_epochs))
    return v1.train.exponential_decay(lr, global_step, decay_steps, decay_rate, staircase=staircase,
                                      name="schedule")
