"""MNIST-format datasets: four IDX gz files, 28x28 grey digits, a validation split taken off the training set."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from runner.datasets.files import folder_lock
from runner.datasets.idx import read_idx
from runner.errors import ConfigError, DataError

log = logging.getLogger("runner")

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SPLITS = ("train", "validation", "test")


class IdxDigits:
    """Base of ``mnist`` and ``digits``: subclasses only say how missing files are obtained (:meth:`fetch`)."""

    name = "idx"
    kind = "MNIST"
    num_classes = 10
    image_shape = (28, 28, 1)  # raw images, uint8
    output_shape = (28, 28, 1)  # after preprocessing, float32 in [0, 1]

    def __init__(self, data_dir: str, validation_size: int):
        self.data_dir = Path(data_dir).expanduser()
        self.validation_size = validation_size
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------------ files
    def paths(self) -> dict[str, Path]:
        return {key: self.data_dir / name for key, name in FILES.items()}

    def stale(self) -> bool:
        """Whether files that exist must be made again (generated data whose settings changed)."""
        return False

    def fetch(self, missing: list[Path]) -> None:
        """Obtains the missing files, or raises DataError saying where it looked and what to do."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Makes sure the files are present and valid, and loads the splits."""
        if self._arrays is not None:
            return
        with folder_lock(self.data_dir):  # parallel jobs: one fetches, the others wait and read
            stale = self.stale()
            missing = [p for p in self.paths().values() if stale or not p.exists()]
            if missing:
                self.fetch(missing)
        self._arrays = self._load()

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        p = self.paths()
        parts = {}
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
            parts[split] = (images[..., None], labels.astype(np.int32))
        images, labels = parts["train"]
        v = self.validation_size
        if not 0 <= v < len(images):
            raise ConfigError(f"dataset.validation_size={v} must be smaller than the {len(images)} training "
                              f"examples in {self.data_dir}")
        return {"train": (images[v:], labels[v:]), "validation": (images[:v], labels[:v]), "test": parts["test"]}

    # ------------------------------------------------------------------ splits
    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images [N, 28, 28, 1] and int32 labels [N] of a split."""
        self.prepare()
        return self._arrays[split]

    def num_examples(self, split: str) -> int:
        return len(self.arrays(split)[1])

    def source_files(self) -> list[Path]:
        return list(self.paths().values())

    # ------------------------------------------------------------------ records (TFRecords, see records.py)
    def record_files(self, split: str) -> list[str]:
        from runner.datasets.records import ensure_records

        return [str(ensure_records(self)[split])]

    record_kind = "tfrecord"

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
