"""MNIST-format datasets: four IDX gz files, 28x28 grey digits, a validation split taken off the training set."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runner.datasets.base import FileDataset
from runner.datasets.idx import read_idx
from runner.errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

class IdxDigits(FileDataset):
    """Base of ``mnist`` and ``digits``: subclasses only say how missing files are obtained (:meth:`fetch`)."""

    name = "idx"
    kind = "MNIST"
    num_classes = 10
    image_shape = (28, 28, 1)  # raw images, uint8
    output_shape = (28, 28, 1)  # after preprocessing, float32 in [0, 1]

    def files(self) -> dict[str, Path]:
        return {key: self.data_dir / name for key, name in FILES.items()}

    def paths(self) -> list[Path]:
        return list(self.files().values())

    def read(self):
        p = self.files()
        parts = []
        for split in ("train", "test"):
            images = read_idx(p[f"{split}_images"])
            labels = read_idx(p[f"{split}_labels"])
            if images.ndim != 3 or images.shape[1:] != self.image_shape[:2]:
                raise DataError(f"{p[f'{split}_images']}: expected images of shape [N, 28, 28], got {images.shape}")
            if labels.ndim != 1 or len(labels) != len(images):
                raise DataError(f"{p[f'{split}_labels']}: {labels.shape[0]} labels for {len(images)} images in "
                                f"{p[f'{split}_images']}; the pair does not match")
            if labels.size and labels.max() >= self.num_classes:
                raise DataError(f"{p[f'{split}_labels']}: label {labels.max()} is not in 0..{self.num_classes - 1}")
            parts.append((images[..., None], labels.astype(np.int32)))
        return tuple(parts)

    # ------------------------------------------------------------------ records (TFRecords, see records.py)
    def record_files(self, split: str) -> list[str]:
        from runner.datasets.records import ensure_records

        return [str(ensure_records(self)[split])]

    record_kind = "tfrecord"

    def damaged_records(self) -> tuple[str, str] | None:
        from runner.datasets.records import find_corrupt, records_dir

        return find_corrupt(sorted(records_dir(self).glob("*.tfrecords")))

    def decode(self, serialized):
        """A batch of serialized tf.train.Example protos -> (uint8 images [B, 28, 28, 1], int32 labels [B])."""
        from runner.datasets.records import parse_examples

        return parse_examples(serialized, self.image_shape)

    # ------------------------------------------------------------------ preprocessing
    def preprocess(self, images, training: bool):
        """TF, batched: uint8 -> float32 scaled to [0, 1]. MNIST has no distortions."""
        import tensorflow as tf

        return tf.cast(images, tf.float32) * (1.0 / 255.0)

    def preprocess_np(self, images: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
        """numpy, batched: the same as :meth:`preprocess`."""
        return images.astype(np.float32) * np.float32(1.0 / 255.0)
