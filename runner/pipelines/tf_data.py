"""tf.data: record files -> shuffle -> repeat -> batch -> parallel map (decode + preprocess, batched) -> prefetch.

Mapping after batching decodes and preprocesses a whole batch per call, which is cheaper than one image at a time.
``num_parallel_reads`` reads that many record files at once, a record from each in turn. ``cache`` decodes the
split once: ``memory`` holds it in memory, ``disk`` saves it under the dataset's cache folder for every later run
(runner.pipelines.saved); either way it is then shuffled, batched and preprocessed as before, in the same order.
Every -1 is tf.data's AUTOTUNE, set by tf.data's autotuner (``autotune``). Iterators are initializable and
initialized once the session exists.
"""
from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf
from tensorflow.python.data.experimental.ops import data_service_ops  # a job name per epoch: a tensor

from runner.config.schema import TfDataConfig
from runner.core.errors import ConfigError
from runner.core.system import available_memory
from runner.datasets.base import Dataset
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, Pipeline, Shard, Stage, record_files
from runner.pipelines.saved import DECODE_CHUNK, saved

AUTOTUNE = tf.data.AUTOTUNE


EPOCH_REFRESH_MS = 100  # how often a consumer asks the dispatcher for its tasks: a new epoch's job waits up to this


@PIPELINES.register("tf_data")
class TfData(Pipeline):
    def __init__(self, config: TfDataConfig, dataset: Dataset, seed: int, shard: Shard = Shard()):
        super().__init__(config, dataset, seed, shard)
        self.shuffle_buffer = config.shuffle_buffer
        self.num_parallel_reads = config.num_parallel_reads  # -1 is AUTOTUNE as it is
        self.num_parallel_calls = AUTOTUNE if config.num_parallel_calls == -1 else config.num_parallel_calls
        self.prefetch = AUTOTUNE if config.prefetch == -1 else config.prefetch
        self.cache = config.cache
        self.threads = {"private_threadpool_size": config.private_threadpool_size,
                        "max_intra_op_parallelism": config.max_intra_op_parallelism}
        self.deterministic = config.deterministic
        self.autotune = config.autotune  # algorithm, cpu_budget, ram_budget (pipeline.autotune)
        # A dispatcher's grpc:// address (runner.distributed.data_service resolves local): the training batches
        # are made by its workers, one job (job_name) shared by every consumer of the run.
        self.service = config.service

    STAGES = ("read", "decode", "preprocess")  # the prefixes the bench times; the whole adds prefetch
    FINAL_STAGE = "batch"

    def _sharded(self, ds: tf.data.Dataset, split: str, training: bool) -> tuple[tf.data.Dataset, int]:
        """This worker's shard of a split's records or examples (every count-th from its index), and its size."""
        n = self.dataset.num_examples(split)
        if self.shard.applies(split, training) and not (training and self.service):  # the service shares it out
            ds = ds.shard(self.shard.count, self.shard.index)
            n = len(range(self.shard.index, n, self.shard.count))
        return ds, n

    def _records(self, split: str, training: bool) -> tuple[tf.data.Dataset, int]:
        """The split's records (this worker's shard of them) and how many examples they hold."""
        return self._sharded(record_files(self.dataset, split).dataset(parallel_reads=self.num_parallel_reads),
                             split, training)

    def _decoded(self, split: str, training: bool) -> tuple[tf.data.Dataset, int]:
        """The split decoded once: (example, label) pairs held in memory (cache=memory) or loaded from the split's
        save (cache=disk)."""
        if self.cache == "disk":
            return self._sharded(saved(self.dataset, split), split, training)
        ds, n = self._records(split, training)
        size = n * int(np.prod(self.dataset.raw_shape)) * np.dtype(self.dataset.raw_dtype).itemsize
        free = available_memory()
        if 2 * size > free:
            raise ConfigError(f"pipeline.cache=memory holds the decoded {split} split in memory: "
                              f"{size / 2**30:.2f} GB, and {free / 2**30:.2f} GB are available; use "
                              f"pipeline.cache=disk or pipeline.cache=none")
        ds = ds.batch(DECODE_CHUNK).map(self.dataset.decode, num_parallel_calls=self.num_parallel_calls)
        return ds.unbatch().cache(), n

    def _ordered(self, ds: tf.data.Dataset, batch_size: int, training: bool, one_epoch: bool = False
                 ) -> tf.data.Dataset:
        if training and one_epoch:  # one epoch of a service job: a new job, so a new unseeded shuffle, each epoch
            self.next_seed()
            return ds.shuffle(self.shuffle_buffer, seed=None).batch(batch_size)
        if training:  # shuffle before repeat: every epoch is a permutation of the split
            seed = self.next_seed()
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
            return ds.batch(batch_size, drop_remainder=True)
        return ds.batch(batch_size).repeat()  # batch before repeat: each pass ends with its own short batch

    def _finished(self, ds: tf.data.Dataset, training: bool) -> tf.data.Dataset:
        ds = ds.prefetch(self.prefetch)
        options = tf.data.Options()
        # max_intra_op_parallelism=1 (the default): each batch-wide op of the map runs on one thread, so input
        # work stays off the cores the model's ops use in parallel instead of competing with them op by op.
        for key, value in self.threads.items():
            if value:  # 0: as TensorFlow has it
                setattr(options.threading, key, value)
        # deterministic=false: training batches as they are ready; an eval pass keeps its order, so it holds each
        # example once (a batch of the next pass never overtakes the current pass's last one).
        options.deterministic = self.deterministic or not training
        # tf.data's autotuner, as tf.data runs it: it sets every AUTOTUNE (-1) value from its model of the
        # pipeline. (Its thread can make a session's close wait up to a minute: runner.core.closing.)
        options.autotune.enabled = True
        options.autotune.autotune_algorithm = getattr(tf.data.experimental.AutotuneAlgorithm,
                                                      self.autotune.algorithm.upper())
        options.autotune.cpu_budget = self.autotune.cpu_budget
        options.autotune.ram_budget = self.autotune.ram_budget
        return ds.with_options(options)

    def _batches(self, split: str, batch_size: int, training: bool, upto: str = "preprocess",
                 one_epoch: bool = False):
        """The pipeline up to stage ``upto``: record batches (read), decoded batches (decode), or model inputs;
        ``one_epoch``: training batches of one epoch, the last one short."""
        if self.cache != "none" and upto != "read":
            ds, n = self._decoded(split, training)
            ds = self._ordered(ds, batch_size, training, one_epoch)
        else:
            ds, n = self._records(split, training)
            ds = self._ordered(ds, batch_size, training, one_epoch)
            if upto == "read":
                return self._finished(ds, training), n
            ds = ds.map(self.dataset.decode, num_parallel_calls=self.num_parallel_calls) if upto == "decode" else \
                ds.map(lambda r: self._model_inputs(*self.dataset.decode(r), training),
                       num_parallel_calls=self.num_parallel_calls)
            return self._finished(ds, training), n
        if upto == "preprocess":
            ds = ds.map(lambda x, y: self._model_inputs(x, y, training), num_parallel_calls=self.num_parallel_calls)
        return self._finished(ds, training), n

    def _served(self, split: str, batch_size: int) -> tuple[tf.data.Dataset, int]:
        """The training batches from the tf.data service. parallel_epochs: each worker runs the whole pipeline,
        repeated. distributed_epoch: the workers share out one epoch at a time, a job per epoch (``JOB/epochN``,
        every consumer of the run reading its share of each): the epoch's short batches, one per worker, are
        rebatched here, so every example comes once per epoch, as in this process."""
        if not self.service.startswith("grpc://"):
            raise ConfigError(f"pipeline.service={self.service}: the run resolves it to a dispatcher's "
                              f"grpc://HOST:PORT (runner.distributed.data_service.input_service)")
        compression = "AUTO" if self.config.service_compression == "auto" else None
        service, name, mode = self.service, self.config.job_name, self.config.processing_mode
        with warnings.catch_warnings():  # the service reads the options in graph mode, which tf.data warns of
            warnings.filterwarnings("ignore", "To make it possible to preserve tf.data options")
            if mode == "parallel_epochs":
                ds, n = self._batches(split, batch_size, True)
                return ds.apply(tf.data.experimental.service.distribute(
                    processing_mode=mode, service=service, job_name=name, compression=compression)), n
            epoch, n = self._batches(split, batch_size, True, one_epoch=True)
            dataset_id = tf.data.experimental.service.register_dataset(service, epoch, compression=compression)

        def one_epoch(index):
            job = None if name is None else tf.strings.join(  # the public from_dataset_id takes a str name alone
                ["dataset_id=", tf.strings.as_string(dataset_id) if dataset_id.dtype != tf.string else dataset_id,
                 tf.strings.join([name, "/epoch", tf.strings.as_string(index)])], "/")
            return data_service_ops._from_dataset_id(processing_mode=mode, service=service, dataset_id=dataset_id,
                                                     element_spec=epoch.element_spec, job_name=job,
                                                     task_refresh_interval_hint_ms=EPOCH_REFRESH_MS)

        epochs = tf.data.Dataset.range(np.iinfo(np.int64).max).flat_map(one_epoch)
        return epochs.rebatch(batch_size, drop_remainder=True).prefetch(self.prefetch), n

    def _model_inputs(self, images, labels, training: bool):
        return self.dataset.preprocess(images, training), labels

    def build(self, split: str, batch_size: int, training: bool) -> Batch:
        if training and self.service:
            ds, n = self._served(split, batch_size)
        else:
            ds, n = self._batches(split, batch_size, training)
        iterator = tf.compat.v1.data.make_initializable_iterator(ds, shared_name=None)
        images, labels = iterator.get_next(name=f"{split}_batch")
        return Batch(images, labels, n, on_session=lambda sess: sess.run(iterator.initializer))

    def stage(self, name: str, split: str, batch_size: int) -> Stage:
        """The pipeline up to ``name`` (of STAGES), with its parallelism and prefetch, on training batches."""
        ds, _ = self._batches(split, batch_size, True, upto=name)
        iterator = tf.compat.v1.data.make_initializable_iterator(ds)
        out = iterator.get_next()
        records = out if name == "read" else out[0]
        return Stage(name, fetch=records, count=tf.shape(records)[0],
                     on_session=lambda sess: sess.run(iterator.initializer))
