"""The parts of a run as the engine takes them, and the model wrapped so that every call shares its variables."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.datasets.base import Dataset
from runner.engine.replicas import Replicas
from runner.ops.precision import in_precision
from runner.pipelines.base import Pipeline


@dataclass
class Parts:
    """The built parts of a run, what the engine runs; runner.run.build makes them from the config."""

    dataset: Dataset
    pipeline: Pipeline
    model: Callable[..., tf.Tensor]  # (images, training) -> logits, variables shared between calls
    trainer: Callable
    names: dict[str, str]  # the registry names of the parts: dataset, pipeline, model, trainer
    make_lr: Callable  # (global_step, steps_per_epoch) -> learning-rate tensor
    make_optimizer: Callable  # learning rate -> tf.compat.v1.train.Optimizer
    devices: list[str]  # one tower per device
    variable_device: str
    session_config: v1.ConfigProto
    input_device: str = "/cpu:0"  # where input pipelines run (a cluster worker's own CPU)
    replicas: Replicas | None = None  # this process's place in a cluster, or None
    xla: bool = False  # hardware.xla: the session auto-clusters for XLA


def shared_model(fn: Callable, num_classes: int, config: Any, precision: str) -> Callable[..., tf.Tensor]:
    """Wraps a registered model so every call (towers, eval) shares one set of variables and computes in
    ``precision`` (runner.ops.precision). ``getter`` (a variable_scope custom getter) lets evaluation read other values,
    such as moving averages."""
    fn = in_precision(fn, precision)

    def model(images: tf.Tensor, training: bool, getter: Callable | None = None) -> tf.Tensor:
        with v1.variable_scope(v1.get_variable_scope(), reuse=v1.AUTO_REUSE, custom_getter=getter):
            return fn(images, config, num_classes=num_classes, training=training)

    return model


def moving_average_getter(ema: v1.train.ExponentialMovingAverage) -> Callable:
    """A custom getter that hands out each variable's moving average (the variable itself if it has none)."""

    def average_getter(getter, name, *args, **kwargs):  # TensorFlow passes the next getter as ``getter``
        var = getter(name, *args, **kwargs)
        average = ema.average(var)
        return var if average is None else average

    return average_getter


def count_parameters() -> int:
    return int(sum(np.prod(v.shape.as_list()) for v in v1.trainable_variables()))
