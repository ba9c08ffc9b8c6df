"""Fixed-length binary records, CIFAR-10's layout generalized: each file is ``header_bytes`` then records of
``label_bytes`` label bytes followed by the image bytes (``image_shape``, stored channels-first ``chw`` as CIFAR or
``hwc``). ``label_index`` picks the label byte (CIFAR-100: 0 coarse, 1 fine).

The ``fixed_length`` dataset reads such files from ``dataset.root``; ``cifar10`` and ``shapes`` are this layout with
CIFAR-10's constants. The queue and tf_data pipelines read the files with FixedLengthRecordReader /
FixedLengthRecordDataset; feed_dict and preloaded read them with numpy. Both decode the same bytes the same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.config.datasets import FixedLengthConfig
from runner.core.errors import ConfigError, DataError
from runner.core.files import atomic_path
from runner.datasets import DATASETS
from runner.datasets.base import FileDataset, Records, check_labels, match


@dataclass(frozen=True)
class Layout:
    image_shape: tuple[int, int, int]  # height, width, channels
    label_bytes: int = 1
    label_index: int = 0
    order: str = "chw"  # how the image bytes are stored: chw (channels first, as CIFAR) or hwc
    header_bytes: int = 0

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        h, w, c = self.image_shape
        return (c, h, w) if self.order == "chw" else (h, w, c)

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + int(np.prod(self.image_shape))

    def read(self, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images [N, H, W, C] and int32 labels [N] of one file, with numpy."""
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            raise DataError(f"Failed to find file: {path}") from None
        body = raw.size - self.header_bytes
        if body <= 0 or body % self.record_bytes:
            header = f"a {self.header_bytes}-byte header and " if self.header_bytes else ""
            raise DataError(f"{path}: {raw.size} bytes is not {header}a whole number of {self.record_bytes}-byte "
                            f"records ({self.label_bytes} label byte(s) + image {list(self.image_shape)}); the file "
                            f"is empty, truncated or of another layout")
        records = raw[self.header_bytes:].reshape(-1, self.record_bytes)
        labels = records[:, self.label_index].astype(np.int32)
        check_labels(labels, num_classes, lambda i: f"{path}: record {i}")
        images = records[:, self.label_bytes:].reshape(-1, *self.stored_shape)
        if self.order == "chw":
            images = images.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(images), labels

    def write(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        """Writes uint8 images [N, H, W, C] and labels [N] (the other label bytes 0), atomically."""
        label_part = np.zeros((len(labels), self.label_bytes), np.uint8)
        label_part[:, self.label_index] = labels
        stored = images.transpose(0, 3, 1, 2) if self.order == "chw" else images
        records = np.concatenate([label_part, stored.reshape(len(images), -1)], axis=1)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"\0" * self.header_bytes)
                records.tofile(f)

    def decode(self, records):
        """TF, batched: records [B] -> (uint8 images [B, H, W, C], int32 labels [B])."""
        import tensorflow as tf

        raw = tf.reshape(tf.io.decode_raw(records, tf.uint8), [-1, self.record_bytes])
        labels = tf.cast(raw[:, self.label_index], tf.int32)
        images = tf.reshape(raw[:, self.label_bytes:], [-1, *self.stored_shape])
        if self.order == "chw":
            images = tf.transpose(images, [0, 2, 3, 1])
        return images, labels


class FixedLengthFiles(FileDataset):
    """Files of fixed-length records under ``data_dir``: subclasses (or the YAML) give the layout and file names."""

    kind = "fixed-length record"
    layout: Layout
    train_files: list[str]
    test_files: list[str]
    files_hold_validation = False  # the validation split is the head of the training files

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return self.layout.image_shape

    @property
    def files_dir(self) -> Path:
        return self.data_dir

    def _names(self, patterns: list[str]) -> list[Path]:
        return match(self.files_dir, patterns)

    def paths(self) -> list[Path]:
        return self._names(self.train_files) + self._names(self.test_files)

    def read(self):
        def load(paths):
            parts = [self.layout.read(p, self.num_classes) for p in paths]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        return load(self._names(self.train_files)), load(self._names(self.test_files))

    def records(self, split: str) -> Records:
        """The files of a split. The validation split (the first training records) has no files of its own."""
        self.prepare()
        if split == "validation" or (split == "train" and self.validation_size):
            raise ConfigError(f"the queue and tf_data pipelines read whole {self.kind} files: use "
                              f"dataset.validation_size=0 with them, or the feed_dict/preloaded pipelines")
        names = self._names(self.train_files if split == "train" else self.test_files)
        return Records("fixed_length", tuple(map(str, names)), record_bytes=self.layout.record_bytes,
                       header_bytes=self.layout.header_bytes)

    def decode(self, records):
        return self.layout.decode(records)

    def decode_settings(self) -> dict:
        return dataclasses.asdict(self.layout)


@DATASETS.register("fixed_length")
class FixedLength(FixedLengthFiles):
    """Any files of fixed-length image records, described in YAML."""


    def __init__(self, config: FixedLengthConfig):
        super().__init__(config, config.root)
        image_shape, label_index, label_bytes = config.image_shape, config.label_index, config.label_bytes
        if not 0 <= label_index < label_bytes:
            raise ConfigError(f"dataset.label_index={label_index} must pick one of the {label_bytes} label bytes "
                              f"(0..{label_bytes - 1})")
        if len(image_shape) != 3:
            raise ConfigError(f"dataset.image_shape={list(image_shape)} must be [height, width, channels]")
        self.layout = Layout(tuple(image_shape), label_bytes, label_index, config.order, config.header_bytes)
        self.train_files, self.test_files = list(config.train_files), list(config.test_files)
        self._num_classes = config.num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def fetch(self, missing: list[Path]) -> None:
        raise DataError(f"Failed to find file: {missing[0]}; dataset.train_files and dataset.test_files name files "
                        f"(or globs) under dataset.root={self.data_dir}")
