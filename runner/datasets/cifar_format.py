"""CIFAR-10's binary format: fixed-length records of 1 label byte and 3,072 image bytes (1,024 red, 1,024 green,
1,024 blue, each 32x32 row-major), no header or footer. data_batch_1..5.bin hold the training set, test_batch.bin
the test set, all in a cifar-10-batches-bin folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runner.config.datasets import DatasetConfig
from runner.datasets.fixed_length import FixedLengthFiles, Layout

HEIGHT, WIDTH, DEPTH = 32, 32, 3
LAYOUT = Layout((HEIGHT, WIDTH, DEPTH), label_bytes=1, label_index=0, order="chw")
RECORD_BYTES = LAYOUT.record_bytes  # 3,073
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
FOLDER = "cifar-10-batches-bin"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_records(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] and int32 labels [N] of one binary batch file."""
    return LAYOUT.read(path, num_classes=10)


def write_records(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes uint8 images [N, 32, 32, 3] and labels [N] in the binary layout, atomically."""
    LAYOUT.write(path, images, labels)


class CifarBinary(FixedLengthFiles):
    """Base of ``cifar10`` and ``shapes``: subclasses say how missing files are obtained (:meth:`fetch`)."""

    kind = "CIFAR"
    layout = LAYOUT
    num_classes = 10
    class_names = list(CLASSES)

    def __init__(self, config: DatasetConfig, data_dir: str):
        super().__init__(config, data_dir)
        self.train_files, self.test_files = TRAIN_FILES, TEST_FILES

    @property
    def files_dir(self) -> Path:
        return self.data_dir / FOLDER

    batches_dir = files_dir
