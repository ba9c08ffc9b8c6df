"""The CIFAR-10 tutorial's preprocessing, batched, in TensorFlow and in numpy.

Train: random 24x24 crop, random left-right flip, random brightness (max_delta 63), random contrast (0.2 to 1.8),
per-image standardization. Eval: central 24x24 crop and per-image standardization. Pixels are floats in [0, 255]
until standardization, as in the tutorial.

Randomness is drawn separately (:func:`sample_tf`, :func:`sample_np`) from the transform (:func:`apply_tf`,
:func:`apply_np`), so the two implementations can be checked to agree exactly on the same draws. Each image of a
batch gets its own crop, flip, brightness and contrast: the same distribution as the tutorial's per-image ops, in a
few vectorized ops per batch instead of a graph per image.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

CROP = 24
MAX_BRIGHTNESS_DELTA = 63.0
CONTRAST_RANGE = (0.2, 1.8)


class Draws(NamedTuple):
    """Per-image random choices of a batch (arrays or tensors of length B)."""

    top: object  # crop offsets, ints in [0, H - 24]
    left: object
    flip: object  # bool
    brightness: object  # added, in [-63, 63)
    contrast: object  # factor in [0.2, 1.8)


# ---------------------------------------------------------------------------------------------- numpy
def sample_np(batch: int, height: int, width: int, rng: np.random.Generator) -> Draws:
    return Draws(rng.integers(0, height - CROP + 1, batch), rng.integers(0, width - CROP + 1, batch),
                 rng.random(batch) < 0.5, rng.uniform(-MAX_BRIGHTNESS_DELTA, MAX_BRIGHTNESS_DELTA, batch),
                 rng.uniform(*CONTRAST_RANGE, batch))


def standardize_np(x: np.ndarray) -> np.ndarray:
    """tf.image.per_image_standardization: (x - mean) / max(stddev, 1 / sqrt(num_elements)), per image."""
    axes = (1, 2, 3)
    mean = x.mean(axes, keepdims=True)
    std = x.std(axes, keepdims=True)
    return ((x - mean) / np.maximum(std, 1.0 / np.sqrt(np.prod(x.shape[1:])))).astype(np.float32)


def apply_np(images: np.ndarray, d: Draws) -> np.ndarray:
    """uint8 [B, H, W, 3] -> float32 [B, 24, 24, 3] with the given draws."""
    offsets = np.arange(CROP)
    rows = d.top[:, None] + offsets
    cols = d.left[:, None] + np.where(d.flip[:, None], CROP - 1 - offsets, offsets)  # a flip is a reversed crop
    x = images[np.arange(len(images))[:, None, None], rows[:, :, None], cols[:, None, :]].astype(np.float32)
    x = x + d.brightness[:, None, None, None].astype(np.float32)
    mean = x.sum(1, keepdims=True).sum(2, keepdims=True) / np.float32(CROP * CROP)  # 9x faster than mean((1, 2))
    x = (x - mean) * d.contrast[:, None, None, None].astype(np.float32) + mean
    return standardize_np(x)


def eval_np(images: np.ndarray) -> np.ndarray:
    top, left = (images.shape[1] - CROP) // 2, (images.shape[2] - CROP) // 2
    return standardize_np(images[:, top:top + CROP, left:left + CROP].astype(np.float32))


def preprocess_np(images: np.ndarray, training: bool, rng: np.random.Generator | None) -> np.ndarray:
    if not training:
        return eval_np(images)
    return apply_np(images, sample_np(len(images), images.shape[1], images.shape[2], rng or np.random.default_rng()))


# ---------------------------------------------------------------------------------------------- TensorFlow
def sample_tf(batch, height: int, width: int) -> Draws:
    """Random ops take their seeds from the graph-level seed (tf.compat.v1.set_random_seed)."""
    import tensorflow as tf

    def uniform(lo, hi, dtype=tf.float32):
        return tf.random.uniform([batch], lo, hi, dtype=dtype)

    return Draws(uniform(0, height - CROP + 1, tf.int32), uniform(0, width - CROP + 1, tf.int32),
                 uniform(0.0, 1.0) < 0.5, uniform(-MAX_BRIGHTNESS_DELTA, MAX_BRIGHTNESS_DELTA),
                 uniform(*CONTRAST_RANGE))


def apply_tf(images, d: Draws):
    import tensorflow as tf

    offsets = tf.range(CROP)
    rows = tf.cast(d.top, tf.int32)[:, None] + offsets
    flipped = tf.where(tf.cast(d.flip, tf.bool)[:, None], CROP - 1 - offsets, offsets)  # a flip is a reversed crop
    cols = tf.cast(d.left, tf.int32)[:, None] + flipped
    x = tf.gather(images, rows, axis=1, batch_dims=1)
    x = tf.cast(tf.gather(x, cols, axis=2, batch_dims=1), tf.float32)
    x = x + tf.cast(d.brightness, tf.float32)[:, None, None, None]
    mean = tf.reduce_mean(x, [1, 2], keepdims=True)
    x = (x - mean) * tf.cast(d.contrast, tf.float32)[:, None, None, None] + mean
    return tf.image.per_image_standardization(x)


def eval_tf(images):
    import tensorflow as tf

    top, left = (images.shape[1] - CROP) // 2, (images.shape[2] - CROP) // 2
    x = tf.cast(images[:, top:top + CROP, left:left + CROP], tf.float32)
    return tf.image.per_image_standardization(x)


def preprocess_tf(images, training: bool):
    """uint8 [B, H, W, 3] -> float32 [B, 24, 24, 3]; B may be unknown until run time."""
    import tensorflow as tf

    if not training:
        return eval_tf(images)
    draws = sample_tf(tf.shape(images)[0], int(images.shape[1]), int(images.shape[2]))
    return apply_tf(images, draws)
