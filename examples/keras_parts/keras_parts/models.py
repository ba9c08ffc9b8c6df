"""model=keras_mlp: a multilayer perceptron of tf_keras layers, in TensorFlow's graph mode.

A model that owns its variables (Keras layers do) registers as a class: runner makes one instance per graph and
calls it from every tower and eval, so the towers share one set of variables (runner.engine.model.built_once)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from keras_parts import KerasMlpConfig
from runner.models import MODELS

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}  # hardware.precision


@MODELS.register("keras_mlp")
class KerasMlp:
    def __init__(self, config: KerasMlpConfig, *, num_classes: int, precision: str):
        policy = tf_keras.mixed_precision.Policy(POLICIES[precision])  # float32 variables, compute in precision
        regularizer = tf_keras.regularizers.L2(config.weight_decay) if config.weight_decay else None
        layers: list = [tf_keras.layers.Flatten(dtype=policy)]
        for units in config.hidden:
            layers.append(tf_keras.layers.Dense(units, kernel_regularizer=regularizer, dtype=policy))
            if config.batch_norm:
                layers.append(tf_keras.layers.BatchNormalization(dtype=policy))
            layers.append(tf_keras.layers.ReLU(dtype=policy))
            if config.dropout:
                layers.append(tf_keras.layers.Dropout(config.dropout, dtype=policy))
        layers.append(tf_keras.layers.Dense(num_classes, dtype="float32"))  # logits in float32
        self.net = tf_keras.Sequential(layers, name="keras_mlp")

    def __call__(self, images: tf.Tensor, *, training: bool) -> tf.Tensor:
        return self.net(images, training=training)

    @property
    def losses(self) -> list:
        return self.net.losses

    @property
    def updates(self) -> list:
        return self.net.updates
