"""What every pipeline hands the trainer, and the epoch contract they all keep.

Training batches stream over repeated epochs; each epoch visits the split in a new order (``queue`` mixes across
epoch boundaries, as shuffle_batch does; ``tf_data`` with ``deterministic=false`` takes batches as they are ready, so
a few cross an epoch's boundary). Eval batches (``training=False``) come in order and cycle: a pass of
``ceil(N / batch_size)`` batches visits every example exactly once, the last batch being short when
``batch_size`` does not divide N.
"""
from __future__ import annotations

import itertools
import os
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from runner.config.schema import PipelineConfig
from runner.core.errors import DataChanged, DataError
from runner.datasets.base import Dataset, Records


@dataclass
class Batch:
    """One split's batches, as graph tensors, plus how to drive them."""

    images: tf.Tensor  # float32 [batch, H, W, C], batch dimension None
    labels: tf.Tensor  # int32 [batch]
    num_examples: int  # examples in one epoch of the split
    feed: Callable[[], dict] | None = None  # feed_dict: the placeholders' values for the next step
    on_session: Callable[[tf.compat.v1.Session], None] | None = None  # after variables are initialized/restored
    advance: tf.Operation | None = None  # run with every step that takes this batch (prepares the next one)
    fill_size: tf.Tensor | None = None  # queue: examples waiting in the shuffle queue
    fill_target: int = 0  # queue: examples it holds before the first batch can leave


    def pull(self) -> list:
        """What to run to take one batch on its own: images, labels and the advance op when there is one."""
        return [self.images, self.labels] + ([self.advance] if self.advance is not None else [])


@dataclass
class Stage:
    """A prefix of a pipeline, built in the default graph for the bench's stage attribution (runner.perf.stages):
    ``fetch`` is what one call runs and ``count`` how many examples it yields (a tensor, or an int); a Python stage
    (feed_dict's) has ``call`` instead, returning its examples. ``threads`` calls run at once, as the pipeline runs
    them (the queue's reader threads)."""

    name: str
    fetch: object = None
    count: object = 0
    call: Callable[[], int] | None = None
    on_session: Callable[[tf.compat.v1.Session], None] | None = None
    threads: int = 1


@dataclass(frozen=True)
class Shard:
    """A cluster worker's part of the training split: ``count`` workers read disjoint parts that together cover
    it. Each pipeline cuts it its own way (by position, index or record key); evaluation reads whole splits."""

    index: int = 0
    count: int = 1

    def applies(self, split: str, training: bool) -> bool:
        return self.count > 1 and training and split == "train"


class Pipeline(ABC):
    """How batches reach the train op: each pipeline registers in PIPELINES and keeps the epoch contract above.

    ``build`` makes one split's batches in the default graph (each build, a tower's or a split's, has its own
    stream: :meth:`next_seed`); ``stage`` builds a prefix of the pipeline for the bench's stage attribution, one of
    ``STAGES`` (in order) or ``FINAL_STAGE`` (the whole)."""

    STAGES: tuple[str, ...] = ()
    FINAL_STAGE: str = ""

    def __init__(self, config: PipelineConfig, dataset: Dataset, seed: int, shard: Shard = Shard()):
        """``config``: the pipeline's schema instance (runner.config.schema), its values from the option's YAML."""
        self.config, self.dataset, self.seed, self.shard = config, dataset, seed, shard
        self._builds = itertools.count()

    def next_seed(self) -> int:
        """The seed of the next build's stream: the run's seed, then one more per build."""
        return self.seed + next(self._builds)

    @abstractmethod
    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        """Training batches (``training``) or an eval pass's, of ``split``."""

    @abstractmethod
    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """The prefix ``name`` of the pipeline on ``split``, timed on its own by the bench."""


# graph -> {path: (size, mtime_ns) when the graph was built}: the files its pipelines read
_WATCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def watch(paths: Iterable) -> None:
    """Records the size and mtime of files that the graph being built reads from, so that a run stops, naming
    the file, when one changes under it (:func:`check_unchanged`): a reader would otherwise go on with fewer
    records, or with others, than the split was counted with."""
    stamps = _WATCHED.setdefault(tf.compat.v1.get_default_graph(), {})
    for path in map(str, paths):
        if path not in stamps:
            stamps[path] = _stamp(path)


def check_unchanged(graph: tf.Graph) -> None:
    """Raises DataChanged naming the first file :func:`watch` recorded for ``graph`` that changed since."""
    for path, was in _WATCHED.get(graph, {}).items():
        now = _stamp(path)
        if now == was:
            continue
        if now is None:
            what = "it was deleted or moved"
        elif was is None or now[0] != was[0]:
            what = f"{was[0] if was else 0:,} bytes at the start, {now[0]:,} now"
        else:
            what = "rewritten: its modification time changed"
        raise DataChanged(f"{path} changed while the run was reading it ({what}), so the run stopped. Put the file "
                          f"back and rerun the same command to go on (the checkpoints so far are kept), or train on "
                          f"the changed data in a new run_dir")


def record_files(dataset, split: str) -> Records:
    """The record files of a split, for the pipelines that read files (watched with the split's sources). Files
    that hold no records at all are an error naming them: a reader cycling over empty files would wait forever for
    its first record."""
    records = dataset.records(split)
    watch([*records.files, *dataset.source_files(split)])
    for path in records.files:
        if not os.path.exists(path):
            raise DataError(f"Failed to find file: {path}")
    if all(os.path.getsize(path) < records.smallest_file for path in records.files):
        raise DataError(f"the {split} split has no records: {', '.join(records.files)} "
                        f"{'holds' if len(records.files) == 1 else 'hold'} none. Delete the file(s) so they are "
                        f"made again, or check the dataset's files ({dataset.location}).")
    return records


def num_batches(num_examples: int, batch_size: int) -> int:
    """Batches in one eval pass: every example once, the last batch possibly short."""
    return -(-num_examples // batch_size)


class EpochOrder:
    """Indices of a split batch by batch, for pipelines that pick examples by index (feed_dict, preloaded).

    Training: a fresh permutation every epoch; a batch that crosses an epoch boundary takes the end of one
    permutation and the start of the next. Eval: in order, the last batch of each pass short.
    """

    def __init__(self, num_examples: int, training: bool, seed: int):
        self.n = num_examples
        self.training = training
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(self.n) if training else np.arange(self.n)
        self.pos = 0

    def next(self, batch_size: int) -> np.ndarray:
        if not self.training:
            idx = self.order[self.pos:self.pos + batch_size]
            self.pos = (self.pos + len(idx)) % self.n
            return idx
        parts, need = [], batch_size
        while need:
            if self.pos == self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            take = self.order[self.pos:self.pos + need]
            parts.append(take)
            self.pos += len(take)
            need -= len(take)
        return np.concatenate(parts)


def with_input_advance(train_op: tf.Operation, batches: list[Batch]) -> tf.Operation:
    """The train op, grouped with the ops that prepare each batch's next batch (prefetching pipelines)."""
    advances = [b.advance for b in batches if b.advance is not None]
    return tf.group(train_op, *advances) if advances else train_op


def merged_feed(batches: list[Batch]) -> dict | None:
    feeds = [b.feed() for b in batches if b.feed]
    return {k: v for feed in feeds for k, v in feed.items()} if feeds else None
