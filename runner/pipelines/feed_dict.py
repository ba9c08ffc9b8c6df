"""Feeding: placeholders filled from Python on every step with numpy batches (preprocessed in numpy)."""
from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, EpochOrder


@PIPELINES.register("feed_dict")
class FeedDict:
    name = "feed_dict"

    def __init__(self, dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = seed
        self._builds = itertools.count()  # each build (tower, split) gets its own stream

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        images, labels = self.dataset.arrays(split)
        seed = self.seed + next(self._builds)
        order = EpochOrder(len(labels), training, seed)
        rng = np.random.default_rng([seed, 1])
        shape = self.dataset.output_shape
        with tf.name_scope(f"feed_{split}"):
            images_ph = tf.compat.v1.placeholder(tf.float32, [None, *shape], name="images")
            labels_ph = tf.compat.v1.placeholder(tf.int32, [None], name="labels")

        def feed() -> dict:
            idx = order.next(batch_size)
            batch = self.dataset.preprocess_np(images[idx], training, rng)
            return {images_ph: batch, labels_ph: labels[idx]}

        return Batch(images_ph, labels_ph, len(labels), feed=feed)
