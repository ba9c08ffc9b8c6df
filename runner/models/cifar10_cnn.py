"""The CIFAR-10 tutorial's CNN (1,068,298 parameters on 24x24x3 inputs), with its initializers, LRN settings, L2
weight decay on local3/local4, and activation summaries (histogram and sparsity) for training towers."""
from __future__ import annotations

import tensorflow as tf

from runner.config.schema import Cifar10CnnConfig
from runner.models import MODELS
from runner.models.lrn import lrn
from runner.ops.summaries import histogram, scalar

v1 = tf.compat.v1


def _variable(name: str, shape: list[int], stddev: float | None = None, constant: float = 0.0,
              weight_decay: float = 0.0, training: bool = False) -> tf.Variable:
    init = v1.truncated_normal_initializer(stddev=stddev) if stddev else v1.constant_initializer(constant)
    var = v1.get_variable(name, shape, initializer=init, dtype=tf.float32)  # read as the compute type
    if weight_decay and training:  # once per training tower; evaluation adds no loss
        decay = tf.multiply(tf.nn.l2_loss(tf.cast(var, tf.float32)), weight_decay, name="weight_loss")  # float32
        v1.add_to_collection(v1.GraphKeys.REGULARIZATION_LOSSES, decay)
    return var


def _summarize(x: tf.Tensor, name: str, training: bool) -> tf.Tensor:
    """Histogram and sparsity of a layer's activations, tagged ``<layer>/activations`` and ``<layer>/sparsity``."""
    if training:
        histogram(f"{name}/activations", x)
        scalar(f"{name}/sparsity", tf.nn.zero_fraction(x))
    return x


def _lrn(x: tf.Tensor, name: str) -> tf.Tensor:
    return lrn(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, name=name)  # in float32: models/lrn.py


def _max_pool(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf.nn.max_pool2d(x, ksize=3, strides=2, padding="SAME", name=name)


@MODELS.register("cifar10_cnn")
def cifar10_cnn(images: tf.Tensor, config: Cifar10CnnConfig, *, num_classes: int, training: bool) -> tf.Tensor:
    weight_decay = config.weight_decay

    def layer(name: str, make) -> tf.Tensor:
        with v1.variable_scope(name):
            return _summarize(tf.identity(make(), name=name), name, training)

    def conv1():
        kernel = _variable("weights", [5, 5, 3, 64], stddev=5e-2)
        conv = tf.nn.conv2d(images, kernel, strides=1, padding="SAME")
        return tf.nn.relu(conv + _variable("biases", [64], constant=0.0))

    norm1 = _lrn(_max_pool(layer("conv1", conv1), "pool1"), "norm1")

    def conv2():
        kernel = _variable("weights", [5, 5, 64, 64], stddev=5e-2)
        conv = tf.nn.conv2d(norm1, kernel, strides=1, padding="SAME")
        return tf.nn.relu(conv + _variable("biases", [64], constant=0.1))

    pool2 = _max_pool(_lrn(layer("conv2", conv2), "norm2"), "pool2")

    def local(x: tf.Tensor, units: int):
        weights = _variable("weights", [x.shape[-1], units], stddev=0.04, weight_decay=weight_decay,
                            training=training)
        return tf.nn.relu(tf.matmul(x, weights) + _variable("biases", [units], constant=0.1))

    flat = tf.reshape(pool2, [-1, pool2.shape[1] * pool2.shape[2] * pool2.shape[3]])
    local3 = layer("local3", lambda: local(flat, 384))
    local4 = layer("local4", lambda: local(local3, 192))

    def softmax_linear():  # linear logits; the softmax is in the loss
        weights = _variable("weights", [192, num_classes], stddev=1 / 192.0)
        return tf.matmul(local4, weights) + _variable("biases", [num_classes], constant=0.0)

    return layer("softmax_linear", softmax_linear)
