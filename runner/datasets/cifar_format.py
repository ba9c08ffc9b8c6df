"""CIFAR-10's binary format: fixed-length records of 1 label byte and 3,072 image bytes (1,024 red, 1,024 green,
1,024 blue, each 32x32 row-major), no header or footer. data_batch_1..5.bin hold the training set, test_batch.bin
the test set, all in a cifar-10-batches-bin folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runner.datasets import cifar_preprocess
from runner.datasets.base import FileDataset
from runner.datasets.files import atomic_path
from runner.errors import ConfigError, DataError

HEIGHT, WIDTH, DEPTH = 32, 32, 3
RECORD_BYTES = 1 + HEIGHT * WIDTH * DEPTH  # 3,073
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
FOLDER = "cifar-10-batches-bin"


def read_records(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] and int32 labels [N] of one binary batch file."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"Failed to find file: {path}") from None
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records; "
                        f"the file is truncated or not a CIFAR-10 binary batch. Delete it so it is fetched again.")
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} is not in 0..9; not a CIFAR-10 binary batch")
    images = records[:, 1:].reshape(-1, DEPTH, HEIGHT, WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def write_records(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes uint8 images [N, 32, 32, 3] and labels [N] in the binary layout, atomically."""
    records = np.concatenate([labels.astype(np.uint8)[:, None],
                              images.transpose(0, 3, 1, 2).reshape(len(images), -1)], axis=1)
    with atomic_path(path) as tmp:
        records.tofile(tmp)


class CifarBinary(FileDataset):
    """Base of ``cifar10`` and ``shapes``: subclasses say how missing files are obtained (:meth:`fetch`)."""

    name = "cifar"
    kind = "CIFAR"
    num_classes = 10
    output_shape = (cifar_preprocess.CROP, cifar_preprocess.CROP, DEPTH)
    record_kind = "fixed_length"
    record_bytes = RECORD_BYTES

    @property
    def batches_dir(self) -> Path:
        return self.data_dir / FOLDER

    def paths(self) -> list[Path]:
        return [self.batches_dir / name for name in TRAIN_FILES + TEST_FILES]

    def read(self):
        train = [read_records(self.batches_dir / name) for name in TRAIN_FILES]
        images = np.concatenate([t[0] for t in train])
        labels = np.concatenate([t[1] for t in train])
        return (images, labels), read_records(self.batches_dir / TEST_FILES[0])

    def record_files(self, split: str) -> list[str]:
        """The binary batch files of a split. The validation split (the first training records) has no files of
        its own, so it is not available to record-reading pipelines."""
        self.prepare()
        if split == "validation" or (split == "train" and self.validation_size):
            raise ConfigError("the queue and tf_data pipelines read whole CIFAR-10 batch files: use "
                              "dataset.validation_size=0 with them, or the feed_dict/preloaded pipelines")
        return [str(self.batches_dir / name) for name in (TRAIN_FILES if split == "train" else TEST_FILES)]

    def decode(self, records):
        """A batch [B] of raw records -> (uint8 images [B, 32, 32, 3], int32 labels [B])."""
        import tensorflow as tf

        raw = tf.reshape(tf.io.decode_raw(records, tf.uint8), [-1, RECORD_BYTES])
        labels = tf.cast(raw[:, 0], tf.int32)
        images = tf.transpose(tf.reshape(raw[:, 1:], [-1, DEPTH, HEIGHT, WIDTH]), [0, 2, 3, 1])
        return images, labels

    def preprocess(self, images, training: bool):
        return cifar_preprocess.preprocess_tf(images, training)

    def preprocess_np(self, images: np.ndarray, training: bool, rng: np.random.Generator | None) -> np.ndarray:
        return cifar_preprocess.preprocess_np(images, training, rng)
