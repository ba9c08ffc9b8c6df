"""The parts of a run as the engine takes them, and the model wrapped so that every call shares its variables."""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
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
    such as moving averages. A model registered as a class owns its variables (:func:`built_once`)."""
    if isinstance(fn, type):
        return built_once(fn, num_classes, config, precision)
    fn = in_precision(fn, precision)

    def model(images: tf.Tensor, training: bool, getter: Callable | None = None) -> tf.Tensor:
        with v1.variable_scope(v1.get_variable_scope(), reuse=v1.AUTO_REUSE, custom_getter=getter):
            return fn(images, config, num_classes=num_classes, training=training)

    return model


def built_once(cls: type, num_classes: int, config: Any, precision: str) -> Callable[..., tf.Tensor]:
    """A model registered as a class, whose instances own their variables (Keras layers, tf_keras): one instance per
    graph, made with ``cls(config, num_classes=..., precision=...)`` and called ``(images, training=...)`` -> logits
    by every tower and eval, so they share one set of variables. The class computes in ``precision`` itself (a Keras
    dtype policy); the logits are taken as float32.

    Its variables are named as if it were called outside any tower (``sequential/dense/kernel``, not
    ``tower_0/...``), so checkpoints fit any number of towers and mode=eval. Its regularization losses (``losses``)
    join REGULARIZATION_LOSSES, computed in each tower, and its training call's state updates (``updates``, batch
    norm's statistics) UPDATE_OPS, as a get_variable model's do. With ``getter`` (moving averages), a second
    instance reads each variable of the first through it."""
    built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # graph -> {getter: instance}, variables made

    def model(images: tf.Tensor, training: bool, getter: Callable | None = None) -> tf.Tensor:
        graph = v1.get_default_graph()
        instances, made = built.setdefault(graph, ({}, []))
        if getter is not None and not made:
            model(images, training)  # the variables first
        net = instances.get(getter)
        if net is None:
            net = instances[getter] = cls(config, num_classes=num_classes, precision=precision)
        scope = graph.get_name_scope()
        creator = _named_at_root(scope, made) if getter is None else _read_through(getter, iter(list(made)))
        before = set(getattr(net, "updates", ())) if training else set()
        with v1.variable_creator_scope(creator):
            logits = net(images, training=training)
        if training and getter is None:
            prefix = f"{scope}/" if scope else ""
            for term in getattr(net, "losses", ()):
                if term.name.startswith(prefix):  # this call's (a tower's own weight decay)
                    v1.add_to_collection(v1.GraphKeys.REGULARIZATION_LOSSES, term)
            for update in getattr(net, "updates", ()):
                if update not in before:
                    v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, update)
        return tf.cast(logits, tf.float32)

    return model


def _named_at_root(outer: str, made: list) -> Callable:
    """A variable creator that names a variable without the caller's name scope ``outer`` (a tower's) and keeps it
    in ``made``, in creation order."""

    def creator(next_creator, **kwargs):  # TensorFlow passes the next creator first
        scope = v1.get_default_graph().get_name_scope()
        inner = scope[len(outer) + 1:] if outer and scope.startswith(f"{outer}/") else scope
        with v1.name_scope(f"{inner}/" if inner else None):
            var = next_creator(**kwargs)
        made.append(var)
        return var

    return creator


def _read_through(getter: Callable, made: Iterator) -> Callable:
    """A variable creator that makes no variable: the n-th one asked for is the first instance's n-th, as ``getter``
    hands it out (its moving average)."""

    def creator(next_creator, **kwargs):
        var = next(made)
        return getter(lambda *args, **kw: var, var.op.name)

    return creator


def moving_average_getter(ema: v1.train.ExponentialMovingAverage) -> Callable:
    """A custom getter that hands out each variable's moving average (the variable itself if it has none)."""

    def average_getter(getter, name, *args, **kwargs):  # TensorFlow passes the next getter as ``getter``
        var = getter(name, *args, **kwargs)
        average = ema.average(var)
        return var if average is None else average

    return average_getter


def count_parameters() -> int:
    return int(sum(np.prod(v.shape.as_list()) for v in v1.trainable_variables()))
