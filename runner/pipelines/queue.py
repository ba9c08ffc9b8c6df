"""Queue runners, as the original readers: string_input_producer -> reader -> decode -> preprocess ->
shuffle_batch, with ``num_threads`` enqueue threads and
``min_after_dequeue = min_fraction_of_examples_in_queue x examples per epoch``,
``capacity = min_after_dequeue + 3 x batch_size``.

Each thread reads ``records_per_read`` records at a time (reader.read_up_to), decodes and preprocesses them as one
small batch and enqueues them together; ``records_per_read=1`` is cifar10_input exactly (one example per read).

Eval reads the split in file order with one thread into a FIFO queue and dequeues exactly up to the end of each pass
(the count is computed in the graph), so a pass sees every example once.
"""
from __future__ import annotations

import logging

import tensorflow as tf

from runner.config.schema import QueueConfig
from runner.datasets.base import Dataset, Records
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, Pipeline, Shard, Stage, record_files

v1 = tf.compat.v1
log = logging.getLogger("runner")


def _reader(source: Records):
    """The original reader for the files' kind of record."""
    if source.kind == "tfrecord":
        return v1.TFRecordReader(options=tf.io.TFRecordOptions(compression_type=source.compression or None))
    if source.kind == "text":
        return v1.TextLineReader(skip_header_lines=source.skip_lines)
    return v1.FixedLengthRecordReader(record_bytes=source.record_bytes, header_bytes=source.header_bytes)


@PIPELINES.register("queue")
class Queue(Pipeline):
    def __init__(self, config: QueueConfig, dataset: Dataset, seed: int, shard: Shard = Shard()):
        super().__init__(config, dataset, seed, shard)
        self.num_threads = config.num_threads
        self.min_fraction = config.min_fraction_of_examples_in_queue
        self.records_per_read = config.records_per_read

    STAGES = ("read", "decode", "preprocess")  # the prefixes the bench times, each on num_threads threads
    FINAL_STAGE = "batch"  # the whole: shuffle_batch

    def _records(self, split: str, training: bool, seed: int):
        """(keys, records): up to records_per_read records, read by a reader op from the shuffled file names."""
        source = record_files(self.dataset, split)
        filename_queue = v1.train.string_input_producer(list(source.files), shuffle=training, seed=seed)
        if source.kind == "file":  # each file is one record: the dequeued names themselves
            names = filename_queue.dequeue_up_to(self.records_per_read)
            return names, names
        return _reader(source).read_up_to(filename_queue, self.records_per_read)

    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """What one reader thread runs up to ``name`` (of STAGES): read, decode, preprocess, not yet enqueued."""
        _, records = self._records(split, training=True, seed=self.seed)
        out = records
        if name != "read":
            out = self.dataset.decode(records)[0]
            if name == "preprocess":
                out = self.dataset.preprocess(out, True)
        return Stage(name, fetch=out, count=tf.shape(records)[0], threads=self.num_threads)

    def _read(self, split: str, training: bool, seed: int):
        """Up to records_per_read preprocessed (float32 images, int32 labels), read by a reader op."""
        keys, records = self._records(split, training, seed)
        if self.shard.applies(split, training):
            # This worker's records: those whose key (file name and record number or offset, the same on every
            # worker) hashes to its index; the workers' parts are disjoint and cover the split.
            names = tf.strings.regex_replace(keys, r".*/", "")
            mine = tf.equal(tf.strings.to_hash_bucket_fast(names, self.shard.count), self.shard.index)
            records = tf.boolean_mask(records, mine)
        images, labels = self.dataset.decode(records)
        images = self.dataset.preprocess(images, training)
        images.set_shape([None, *self.dataset.output_shape])
        return images, labels

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        n = self.dataset.num_examples(split)
        if self.shard.applies(split, training):
            n //= self.shard.count  # about this worker's part of an epoch
        seed = self.next_seed()
        with tf.name_scope(f"queue_{split}"):
            if not training:
                images, labels = self._eval_batches(split, n, batch_size)
                return Batch(images, labels, n)
            read_images, read_labels = self._read(split, training=True, seed=seed)
            min_after_dequeue = int(self.min_fraction * n)
            log.info("Filling queue with %d %s %s before starting to train.", min_after_dequeue,
                     self.dataset.kind, "images" if self.dataset.images else "examples")
            images, labels = v1.train.shuffle_batch(
                [read_images, read_labels], batch_size=batch_size, num_threads=self.num_threads,
                capacity=min_after_dequeue + 3 * batch_size, min_after_dequeue=min_after_dequeue, seed=seed,
                enqueue_many=True)
            fill = v1.get_collection(v1.GraphKeys.QUEUE_RUNNERS)[-1].queue.size()  # the shuffle queue's
        return Batch(images, labels, n, fill_size=fill, fill_target=min_after_dequeue + batch_size)

    def _eval_batches(self, split: str, n: int, batch_size: int):
        images, labels = self._read(split, training=False, seed=0)
        queue = tf.queue.FIFOQueue(capacity=2 * batch_size + self.records_per_read, dtypes=[tf.float32, tf.int32],
                                   shapes=[self.dataset.output_shape, []])
        v1.train.add_queue_runner(v1.train.QueueRunner(queue, [queue.enqueue_many([images, labels])]))
        with v1.variable_scope(None, default_name=f"{split}_eval"):
            cursor = v1.get_variable("cursor", initializer=tf.constant(0, tf.int32), trainable=False,
                                     collections=[v1.GraphKeys.LOCAL_VARIABLES], use_resource=True)
        start = cursor.read_value()
        count = tf.minimum(batch_size, n - start)
        with tf.control_dependencies([cursor.assign(tf.math.floormod(start + count, n))]):
            return queue.dequeue_many(count)
