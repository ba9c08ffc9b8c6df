"""Optimizers and learning-rate schedules, by the names of conf/optimizer/*.yaml and conf/schedule/*.yaml. Each takes
its option's schema instance (runner.config.schema), whose values come from the YAML: none is repeated here."""
from __future__ import annotations

import tensorflow as tf

from runner.config.schema import (
    AdamConfig,
    ExponentialDecayConfig,
    MomentumConfig,
    OptimizerConfig,
    PiecewiseConstantConfig,
    ScheduleConfig,
)
from runner.core.registry import Registry

v1 = tf.compat.v1
OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(config: OptimizerConfig, learning_rate):
    return v1.train.GradientDescentOptimizer(learning_rate)


@OPTIMIZERS.register("momentum")
def momentum(config: MomentumConfig, learning_rate):
    return v1.train.MomentumOptimizer(learning_rate, config.momentum, use_nesterov=config.use_nesterov)


@OPTIMIZERS.register("adam")
def adam(config: AdamConfig, learning_rate):
    return v1.train.AdamOptimizer(learning_rate, beta1=config.beta1, beta2=config.beta2, epsilon=config.epsilon)


@SCHEDULES.register("constant")
def constant(config: ScheduleConfig, lr: float, global_step, steps_per_epoch: float):
    return tf.constant(lr, tf.float32, name="schedule")


@SCHEDULES.register("exponential_decay")
def exponential_decay(config: ExponentialDecayConfig, lr: float, global_step, steps_per_epoch: float):
    decay_steps = max(1, int(steps_per_epoch * config.decay_epochs))
    return v1.train.exponential_decay(lr, global_step, decay_steps, config.decay_rate, staircase=config.staircase,
                                      name="schedule")


@SCHEDULES.register("piecewise_constant")
def piecewise_constant(config: PiecewiseConstantConfig, lr: float, global_step, steps_per_epoch: float):
    return v1.train.piecewise_constant(global_step, [int(b) for b in config.boundaries],
                                       [lr * m for m in config.multipliers], name="schedule")
