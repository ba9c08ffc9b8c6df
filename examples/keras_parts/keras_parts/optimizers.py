"""optimizer=rmsprop: TensorFlow's RMSProp (graph mode's tf.compat.v1.train.RMSPropOptimizer)."""
from __future__ import annotations

import tensorflow as tf

from keras_parts import RmspropConfig
from runner.optim import OPTIMIZERS


@OPTIMIZERS.register("rmsprop")
def rmsprop(config: RmspropConfig, learning_rate):
    return tf.compat.v1.train.RMSPropOptimizer(learning_rate, decay=config.decay, momentum=config.momentum,
                                               epsilon=config.epsilon)
