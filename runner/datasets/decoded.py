"""What the datasets decoded by their own TensorFlow ops share (``image_folder``, ``tfrecord``, ``csv``).

The queue and tf_data pipelines read their files and decode them in the graph. feed_dict and preloaded read the
same records decoded by the same :meth:`decode` once, through tf.data, into arrays cached as .npy files (memory-
mapped) under ``cache_dir`` with a manifest; the cache is rebuilt when a source file or a decoding setting changes.
Decoding everything once also checks every record before training: a record that does not decode, or whose label is
outside the class count, is a DataError naming its file and record, and nothing is cached.
"""
from __future__ import annotations

import abc
import hashlib
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np

from runner.config.datasets import DecodedDatasetConfig
from runner.config.schema import SPLITS
from runner.core.errors import ConfigError, DataError, op_error_text
from runner.core.files import Manifest, atomic_path, folder_lock, full_disk
from runner.datasets.base import Arrays, Damage, Dataset, Records, check_labels

log = logging.getLogger("runner")
DECODE_BATCH = 256


class Decoded(Dataset):
    needs_tensorflow = True

    def __init__(self, config: DecodedDatasetConfig):
        super().__init__(config)
        self.root = Path(config.root).expanduser()
        self._cache_root = Path(config.cache_dir).expanduser()
        self._arrays: dict[str, Arrays] | None = None

    @property
    def location(self) -> str:
        return str(self.root)

    @property
    def cache_dir(self) -> Path:
        """One folder per source folder, so datasets of different roots never share a cache."""
        digest = hashlib.sha1(str(self.root.absolute()).encode()).hexdigest()[:10]
        return self._cache_root / f"{self.name}-{digest}"

    # -------------------------------------------------------------- what subclasses say
    @abc.abstractmethod
    def split_files(self, split: str) -> list[Path]:
        """The source files of a split; [] for a validation split taken from the head of the training files."""

    @abc.abstractmethod
    def source(self, files: list[str]) -> Records:
        """How ``files`` are read as records."""

    @abc.abstractmethod
    def settings(self) -> dict:
        """Every setting the decoded arrays depend on."""

    def decode_settings(self) -> dict:
        return self.settings()

    def describe_record(self, file: Path, index: int) -> str:
        return f"{file}: record {index}"

    def decode_source(self, records):
        """Decodes the records of :meth:`source` (the cache's and the scan's reader); :meth:`decode` by default."""
        return self.decode(records)

    # -------------------------------------------------------------- the interface
    def records(self, split: str) -> Records:
        self.prepare()
        if not self.files_hold_validation and (split == "validation" or (split == "train" and self.validation_size)):
            raise ConfigError(f"the queue and tf_data pipelines read whole {self.kind} files: use "
                              f"dataset.validation_size=0 with them, or the feed_dict/preloaded pipelines")
        return self.source([str(p) for p in self.split_files(split)])

    def num_examples(self, split: str) -> int:
        return len(self.arrays(split)[1])

    def arrays(self, split: str) -> Arrays:
        self.prepare()
        return self._arrays[split]

    def source_files(self, split: str) -> list[Path]:
        return self.split_files(split) or self.split_files("train")  # a validation split from the training files

    def prepare(self) -> None:
        if self._arrays is not None:
            return
        files = {split: self.split_files(split) for split in SPLITS}
        for split in ("train", "test"):
            if not files[split]:
                raise DataError(f"the {split} split of dataset {self.name} has no files in {self.root}; check "
                                f"dataset.root and the file settings")
        for path in sum(files.values(), []):
            if not path.is_file():
                raise DataError(f"Failed to find file: {path}")
        stamps = {split: [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]
                  for split, paths in files.items()}
        self.sources_digest = hashlib.sha1(json.dumps(stamps).encode()).hexdigest()  # what any cache is made from
        spec = {"settings": self.settings(), "sources": self.sources_digest}
        out = self.cache_dir / "decoded"
        paths = {split: (out / f"{split}_examples.npy", out / f"{split}_labels.npy") for split in SPLITS}
        flat = [p for pair in paths.values() for p in pair]
        manifest = Manifest(out / "manifest.json", out)
        if manifest.problem(spec, flat):
            with folder_lock(out):  # parallel jobs: one decodes, the others wait and read
                problem = manifest.problem(spec, flat)
                if problem:
                    self._decode_all(files, paths, manifest, spec, flat, problem)
        arrays = {split: (np.load(x, mmap_mode="r"), np.load(y)) for split, (x, y) in paths.items()}
        if not self.files_hold_validation:  # the validation split is the head of the training files
            (x, y), v = arrays["train"], self.validation_size
            if not 0 <= v < len(y):
                raise ConfigError(f"dataset.validation_size={v} must be smaller than the {len(y)} training "
                                  f"examples in {self.root}")
            arrays["train"], arrays["validation"] = (x[v:], y[v:]), (x[:v], y[:v])
        self._arrays = arrays

    def _decode_all(self, files, paths, manifest: Manifest, spec: dict, flat: list[Path], problem: str) -> None:
        start = time.time()
        if any(p.exists() for p in flat):
            log.info("Rebuilding the decoded %s cache in %s: %s", self.name, manifest.root, problem)
        manifest.invalidate()
        decoded = {}
        for split in SPLITS:  # every split decoded before anything is written: a bad file leaves no cache
            log.info("Decoding the %s split of %s (%d files)", split, self.root, len(files[split]))
            decoded[split] = self.decode_files(files[split])
            if split != "validation" and not len(decoded[split][1]):
                raise DataError(f"{', '.join(map(str, files[split]))}: the {split} split's files hold no records")
        try:
            for split in SPLITS:
                for path, array in zip(paths[split], decoded[split]):
                    with atomic_path(path) as tmp, open(tmp, "wb") as f:
                        np.save(f, array)
        except OSError as err:  # numpy's writes fail without an errno: the disk is full or a size limit reached
            raise full_disk(manifest.root, "decoded cache (dataset.cache_dir)", err) from None
        manifest.write(spec, flat)
        log.info("Decoded in %.1f s into %s", time.time() - start, manifest.root)

    # -------------------------------------------------------------- decoding with the graph's own ops
    def decode_files(self, files: list[Path]) -> Arrays:
        """Every record of ``files`` decoded (as the pipelines do), labels checked; a failure names its file and
        record."""
        import tensorflow as tf

        examples, labels = np.zeros((0, *self.raw_shape), self.raw_dtype), np.zeros((0,), np.int32)
        if not files:
            return examples, labels
        ds = self.source([str(p) for p in files]).dataset().batch(DECODE_BATCH)
        ds = ds.map(self.decode_source, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
        parts = []
        try:
            for x, y in ds.as_numpy_iterator():
                parts.append((x, y))
        except tf.errors.OpError:
            damage = self.scan(files)
            raise DataError(f"{damage.where}: {damage.problem}" if damage else
                            f"the files of {self.root} cannot be decoded") from None
        if parts:
            examples = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            damage = self.scan(files)
            raise DataError(f"{damage.where}: {damage.problem}")
        return examples, labels

    def scan(self, files: list[Path]) -> Damage | None:
        """The first record of ``files`` that does not decode or has a label outside the class count."""
        import tensorflow as tf

        for file in files:
            records = iter(self.source([str(file)]).dataset())
            for index in itertools.count():
                try:
                    record = next(records)
                except StopIteration:
                    break
                except tf.errors.OpError as err:
                    return Damage(self.describe_record(file, index), f"cannot be read ({op_error_text(err)})",
                                  cache=False)
                try:
                    _, label = self.decode_source(tf.reshape(record, [1]))
                except tf.errors.OpError as err:
                    return Damage(self.describe_record(file, index), f"cannot be decoded ({op_error_text(err)})",
                                  cache=False)
                try:
                    check_labels(label.numpy(), self.num_classes, lambda i: "")
                except DataError as err:
                    return Damage(self.describe_record(file, index), str(err).lstrip(": "), cache=False)
        return None

    def damaged_records(self) -> Damage | None:
        return self.scan([p for split in SPLITS for p in self.split_files(split)])
