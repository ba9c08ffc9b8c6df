"""Feeding: placeholders filled from Python on every step with numpy batches (preprocessed in numpy).

With ``prefetch`` a worker thread prepares the next batch while the current step runs (numpy and the session both
release the GIL); without it each step waits for its batch to be made, as the tutorial's fill_feed_dict.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from runner.config.schema import FeedDictConfig
from runner.datasets.base import Dataset
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, EpochOrder, Pipeline, Shard, Stage, watch


@PIPELINES.register("feed_dict")
class FeedDict(Pipeline):
    def __init__(self, config: FeedDictConfig, dataset: Dataset, seed: int, shard: Shard = Shard()):
        super().__init__(config, dataset, seed, shard)
        self.prefetch = config.prefetch

    STAGES = ("gather", "preprocess")  # the prefixes the bench times, in Python on one thread
    FINAL_STAGE = "feed"  # the whole: fed to the placeholders

    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """A training batch's examples taken by index (``gather``), then preprocessed in numpy."""
        images, labels = self.dataset.arrays(split)
        order = EpochOrder(len(labels), True, self.seed)
        rng = np.random.default_rng([self.seed, 1])

        def call() -> int:
            idx = order.next(batch_size)
            batch = images[idx]
            if name == "preprocess":
                self.dataset.preprocess_np(batch, True, rng)
            return len(labels[idx])

        return Stage(name, call=call)

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        images, labels = self.dataset.arrays(split)
        watch(self.dataset.source_files(split))  # read before the run: it stops if they change under it
        if self.shard.applies(split, training):  # this worker's examples: every count-th from its index
            images, labels = images[self.shard.index::self.shard.count], labels[self.shard.index::self.shard.count]
        seed = self.next_seed()
        order = EpochOrder(len(labels), training, seed)
        rng = np.random.default_rng([seed, 1])
        shape = self.dataset.output_shape
        with tf.name_scope(f"feed_{split}"):
            images_ph = tf.compat.v1.placeholder(tf.float32, [None, *shape], name="images")
            labels_ph = tf.compat.v1.placeholder(tf.int32, [None], name="labels")

        def make() -> dict:
            idx = order.next(batch_size)
            batch = self.dataset.preprocess_np(images[idx], training, rng)
            return {images_ph: batch, labels_ph: labels[idx]}

        if not self.prefetch:
            return Batch(images_ph, labels_ph, len(labels), feed=make)
        worker = ThreadPoolExecutor(1, thread_name_prefix=f"feed_{split}")
        pending = [worker.submit(make)]

        def feed() -> dict:  # batches come in the same order as without prefetching, one made ahead
            ready = pending.pop().result()
            pending.append(worker.submit(make))
            return ready

        return Batch(images_ph, labels_ph, len(labels), feed=feed)
