"""tf.data: record files -> shuffle -> repeat -> batch -> parallel map (decode + preprocess, batched) -> prefetch.

Mapping after batching decodes and preprocesses a whole batch per call, which is cheaper than one image at a time.
Iterators are initializable and initialized once the session exists.
"""
from __future__ import annotations

import itertools

import tensorflow as tf

from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, Shard, Stage, record_files

AUTOTUNE = tf.data.AUTOTUNE


@PIPELINES.register("tf_data")
class TfData:
    def __init__(self, dataset, seed: int, shuffle_buffer: int, num_parallel_calls: int,
                 prefetch: int, shard: Shard = Shard()):
        self.dataset = dataset
        self.shard = shard
        self.seed = seed
        self._builds = itertools.count()  # each build (tower, split) gets its own stream
        self.shuffle_buffer = shuffle_buffer
        self.num_parallel_calls = AUTOTUNE if num_parallel_calls == -1 else num_parallel_calls
        self.prefetch = AUTOTUNE if prefetch == -1 else prefetch

    STAGES = ("read", "decode", "preprocess")  # the prefixes the bench times; the whole adds prefetch
    FINAL_STAGE = "batch"

    def _batched(self, split: str, batch_size: int, training: bool) -> tuple[tf.data.Dataset, int]:
        """The split's records, this worker's shard, shuffled and repeated, in batches; and the examples in it."""
        ds = record_files(self.dataset, split).dataset()
        n = self.dataset.num_examples(split)
        if self.shard.applies(split, training):  # this worker's records: every count-th from its index
            ds = ds.shard(self.shard.count, self.shard.index)
            n = len(range(self.shard.index, n, self.shard.count))
        if training:  # shuffle before repeat: every epoch is a permutation of the split
            seed = self.seed + next(self._builds)
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
            return ds.batch(batch_size, drop_remainder=True), n
        return ds.batch(batch_size).repeat(), n  # batch before repeat: each pass ends with its own short batch

    def _finished(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        ds = ds.prefetch(self.prefetch)
        options = tf.data.Options()
        # Each batch-wide op of the map runs on one thread: input work stays off the cores the model's ops use
        # in parallel, instead of competing with them op by op.
        options.threading.max_intra_op_parallelism = 1
        # AUTOTUNE (-1) without the autotuning model: the map runs on all cores and the prefetch buffer grows as
        # needed. The model's background thread made every session close wait for it, up to a minute (20 s
        # after a 60-step CIFAR-10 run), between a run's last eval and its end.
        options.autotune.enabled = False
        return ds.with_options(options)

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        ds, n = self._batched(split, batch_size, training)

        def decode(records):
            images, labels = self.dataset.decode(records)
            return self.dataset.preprocess(images, training), labels

        ds = self._finished(ds.map(decode, num_parallel_calls=self.num_parallel_calls))
        iterator = tf.compat.v1.data.make_initializable_iterator(ds, shared_name=None)
        images, labels = iterator.get_next(name=f"{split}_batch")
        return Batch(images, labels, n, on_session=lambda sess: sess.run(iterator.initializer))

    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """The pipeline up to ``name`` (of STAGES), with its parallelism and prefetch, on training batches."""
        ds, _ = self._batched(split, batch_size, training=True)
        if name != "read":
            ds = ds.map(self.dataset.decode, num_parallel_calls=self.num_parallel_calls)
            if name == "preprocess":
                ds = ds.map(lambda x, y: (self.dataset.preprocess(x, True), y),
                            num_parallel_calls=self.num_parallel_calls)
        iterator = tf.compat.v1.data.make_initializable_iterator(self._finished(ds))
        out = iterator.get_next()
        records = out if name == "read" else out[0]
        return Stage(name, fetch=records, count=tf.shape(records)[0],
                     on_session=lambda sess: sess.run(iterator.initializer))
