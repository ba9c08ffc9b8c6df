"""``dataset.augment``: how raw examples become model inputs, in TensorFlow and in numpy (the same semantics).

- ``none``: uint8 pixels scaled to [0, 1] as float32; float32 examples (feature vectors, float images) unchanged.
  Training and eval alike.
- ``cifar10``: the CIFAR-10 tutorial's distortions (:mod:`runner.datasets.cifar_preprocess`): a random 24x24 crop,
  flip, brightness and contrast, then per-image standardization when training; the central crop and
  standardization for eval. Needs images of at least 24x24 (any number of channels).
"""
from __future__ import annotations

import numpy as np

from runner.core.errors import ConfigError
from runner.datasets import cifar_preprocess


def output_shape(augment: str, raw_shape: tuple[int, ...], images: bool) -> tuple[int, ...]:
    if augment == "none":
        return tuple(raw_shape)
    if not images:
        raise ConfigError(f"dataset.augment={augment} distorts images; this dataset's examples are feature vectors "
                          f"of shape {list(raw_shape)}. Use dataset.augment=none")
    height, width, channels = raw_shape
    crop = cifar_preprocess.CROP
    if height < crop or width < crop:
        raise ConfigError(f"dataset.augment=cifar10 crops {crop}x{crop} from images of {height}x{width}; use "
                          f"images of at least {crop}x{crop} (dataset.image_size) or dataset.augment=none")
    return crop, crop, channels


def preprocess_tf(augment: str, examples, training: bool):
    import tensorflow as tf

    if augment == "cifar10":
        return cifar_preprocess.preprocess_tf(examples, training)
    if examples.dtype == tf.uint8:
        return tf.cast(examples, tf.float32) * (1.0 / 255.0)
    return tf.cast(examples, tf.float32)


def preprocess_np(augment: str, examples: np.ndarray, training: bool,
                  rng: np.random.Generator | None) -> np.ndarray:
    if augment == "cifar10":
        return cifar_preprocess.preprocess_np(examples, training, rng)
    if examples.dtype == np.uint8:
        return examples.astype(np.float32) * np.float32(1.0 / 255.0)
    return examples.astype(np.float32)
