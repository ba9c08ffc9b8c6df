"""The fully_connected_feed network: flattened pixels -> hidden1 (ReLU) -> hidden2 (ReLU) -> linear logits."""
from __future__ import annotations

import math

import tensorflow as tf

from runner.config.schema import MlpConfig
from runner.models import MODELS

v1 = tf.compat.v1


def _dense(x: tf.Tensor, name: str, units: int, relu: bool) -> tf.Tensor:
    fan_in = int(x.shape[-1])
    with v1.variable_scope(name):
        weights = v1.get_variable("weights", [fan_in, units],
                                  initializer=v1.truncated_normal_initializer(stddev=1.0 / math.sqrt(fan_in)))
        biases = v1.get_variable("biases", [units], initializer=v1.zeros_initializer())
        y = tf.matmul(x, weights) + biases
        return tf.nn.relu(y) if relu else y


@MODELS.register("mlp")
def mlp(images: tf.Tensor, config: MlpConfig, *, num_classes: int, training: bool) -> tf.Tensor:
    x = tf.reshape(images, [-1, math.prod(images.shape[1:])])
    x = _dense(x, "hidden1", config.hidden1, relu=True)
    x = _dense(x, "hidden2", config.hidden2, relu=True)
    return _dense(x, "softmax_linear", num_classes, relu=False)
