"""Preloaded data, as the Reading data guide's two variants: the split held in a variable (``storage=variable``,
initialized from a placeholder, so it stays out of the GraphDef) or in a constant of the graph
(``storage=constant``, refused past the 2 GB a GraphDef can hold). Each step slices its batch in the graph through an
index permutation kept in variables."""
from __future__ import annotations

import tensorflow as tf

from runner.config.schema import PreloadedConfig
from runner.core.errors import ConfigError
from runner.core.system import available_memory
from runner.datasets.base import Dataset
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, Pipeline, Shard, Stage, watch

v1 = tf.compat.v1
GRAPH_DEF_LIMIT = 2**31 - 2**26  # bytes a GraphDef can hold (2 GB), less room for the rest of the graph


def _local(name: str, initial) -> tf.Variable:
    return v1.get_variable(name, initializer=initial, trainable=False,
                           collections=[v1.GraphKeys.LOCAL_VARIABLES], use_resource=True)


def _next_indices(n: int, batch_size: int, training: bool, seed: int) -> tf.Tensor:
    """Index of the next batch; advances the cursor (and reshuffles at epoch ends when training)."""
    cursor = _local("cursor", tf.constant(0, tf.int32))
    if not training:  # in order; the last batch of a pass is short
        start = cursor.read_value()
        end = tf.minimum(start + batch_size, n)
        with tf.control_dependencies([cursor.assign(tf.math.floormod(end, n))]):
            return tf.range(start, end)
    perm = _local("permutation", tf.random.shuffle(tf.range(n), seed=2 * seed))
    start = cursor.read_value()
    head = perm.read_value()[start:tf.minimum(start + batch_size, n)]
    need = batch_size - tf.shape(head)[0]
    with tf.control_dependencies([head]):
        fresh = tf.cond(need > 0, lambda: perm.assign(tf.random.shuffle(tf.range(n), seed=2 * seed + 1)),
                        lambda: perm.read_value())
    # Batches never span more than two epochs (batch_size <= n is checked by the builder).
    with tf.control_dependencies([cursor.assign(tf.where(need > 0, need, start + batch_size))]):
        return tf.concat([head, fresh[:need]], 0)


@PIPELINES.register("preloaded")
class Preloaded(Pipeline):
    def __init__(self, config: PreloadedConfig, dataset: Dataset, seed: int, shard: Shard = Shard()):
        super().__init__(config, dataset, seed, shard)
        self.prefetch = config.prefetch
        self.storage = config.storage
        self._data: dict[str, tuple] = {}  # split (or its shard) -> (images var, labels var, init fn, size)
        self._loaded: dict[str, object] = {}  # the same keys -> the session its data was last loaded in

    def _variables(self, split: str, sharded: bool):
        key = f"{split}_shard{self.shard.index}" if sharded else split
        if key not in self._data:
            images, labels = self.dataset.arrays(split)
            if sharded:  # this worker's examples: every count-th from its index
                images, labels = images[self.shard.index::self.shard.count], labels[self.shard.index::self.shard.count]
            if self.storage == "constant":
                return self._constants(key, split, images, labels)
            size, free = images.nbytes + labels.nbytes, available_memory()
            if 2 * size > free:  # the feed's copy and the variable, while loading
                raise ConfigError(f"pipeline=preloaded holds the {split} split in memory: {size / 2**30:.2f} GB, "
                                  f"twice while loading, and {free / 2**30:.2f} GB are available. Use "
                                  f"pipeline=tf_data or pipeline=queue, which stream from the files (or feed_dict, "
                                  f"which reads a memory-mapped cache)")
            with v1.variable_scope(f"preloaded_{key}"):
                images_ph = v1.placeholder(tf.as_dtype(images.dtype), images.shape, name="images_init")
                labels_ph = v1.placeholder(tf.int32, labels.shape, name="labels_init")
                # collections=[]: neither saved in checkpoints nor touched by the global initializer.
                images_var = v1.Variable(images_ph, trainable=False, collections=[], name="images")
                labels_var = v1.Variable(labels_ph, trainable=False, collections=[], name="labels")

            def load(sess):
                if self._loaded.get(key) is not sess:  # once per session, however many batches share it
                    sess.run([images_var.initializer, labels_var.initializer],
                             {images_ph: images, labels_ph: labels})
                    self._loaded[key] = sess

            self._data[key] = (images_var, labels_var, load, len(labels))
        return self._data[key]

    def _constants(self, key: str, split: str, images, labels):
        size = images.nbytes + labels.nbytes
        if size > GRAPH_DEF_LIMIT:
            raise ConfigError(f"pipeline.storage=constant puts the {split} split in the GraphDef, which holds at most "
                              f"2 GB; the split is {size / 2**30:.1f} GB. Use pipeline.storage=variable (fed once, "
                              f"outside the GraphDef) or another pipeline")
        with tf.name_scope(f"preloaded_{key}"):
            self._data[key] = (tf.constant(images, name="images"), tf.constant(labels, name="labels"), None,
                               len(labels))
        return self._data[key]

    STAGES = ("gather", "preprocess")  # the prefixes the bench times
    FINAL_STAGE = "batch"  # the whole: with prefetch, double-buffered

    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """A training batch gathered from the variable (``gather``), then preprocessed in the graph."""
        images_var, _, load, n = self._variables(split, sharded=False)
        with v1.variable_scope(None, default_name=f"preloaded_{name}"):
            images = tf.gather(images_var, _next_indices(n, batch_size, True, self.seed))
            if name == "preprocess":
                images = self.dataset.preprocess(images, True)
        return Stage(name, fetch=images, count=batch_size, on_session=load)

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        watch(self.dataset.source_files(split))  # read before the run: it stops if they change under it
        images_var, labels_var, load, n = self._variables(split, self.shard.applies(split, training))
        with v1.variable_scope(None, default_name=f"preloaded_{split}_{'train' if training else 'eval'}"):
            idx = _next_indices(n, batch_size, training, self.next_seed())
            images = self.dataset.preprocess(tf.gather(images_var, idx), training)
            labels = tf.gather(labels_var, idx)
            if training and self.prefetch:
                return _double_buffered(images, labels, batch_size, n, load)
        return Batch(images, labels, n, on_session=load)


def _double_buffered(images: tf.Tensor, labels: tf.Tensor, batch_size: int, n: int, load) -> Batch:
    """The batch is read from buffer variables; ``advance`` (run with each step) fills them with the next batch
    while the step computes on the current one, as a prefetch does."""
    images_buf = v1.Variable(tf.zeros([batch_size, *images.shape[1:]], images.dtype), trainable=False,
                             collections=[], name="images_buffer")
    labels_buf = v1.Variable(tf.zeros([batch_size], labels.dtype), trainable=False, collections=[],
                             name="labels_buffer")
    fill = tf.group(images_buf.assign(images), labels_buf.assign(labels))
    current_images, current_labels = images_buf.read_value(), labels_buf.read_value()
    with tf.control_dependencies([current_images, current_labels]):
        advance = tf.group(images_buf.assign(images), labels_buf.assign(labels))

    def start(sess):
        if load:
            load(sess)
        sess.run([images_buf.initializer, labels_buf.initializer])
        sess.run(fill)

    return Batch(current_images, current_labels, n, on_session=start, advance=advance)
