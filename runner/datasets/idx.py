"""IDX files (MNIST's format, gzipped or not): a folder with train and test images and labels. The ``idx``
dataset reads any such folder, with the file names in YAML (MNIST's by default) and md5 checksums optional;
``mnist`` and ``digits`` are MNIST's files.

Images [N, H, W] (grey) or [N, H, W, C]; [N, F] files hold feature vectors. Pixels other than uint8 are read as
float32. feed_dict and preloaded use the arrays; the queue and tf_data pipelines read TFRecords converted from the
splits once (as convert_to_records) and cached in ``tfrecords/`` beside the files.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from runner.config.datasets import IdxConfig
from runner.config.schema import SPLITS
from runner.core.errors import DataError
from runner.datasets import DATASETS
from runner.datasets.base import Damage, FileDataset, Records, check_labels
from runner.datasets.download import md5sum
from runner.datasets.idx_format import read_header, read_idx
from runner.datasets.records import ensure_records, find_corrupt, parse_examples, source_stamp, write_records

KEYS = ("train_images", "train_labels", "test_images", "test_labels")


class IdxFiles(FileDataset):
    """Four IDX files in ``data_dir`` named by ``self.names`` ({key in KEYS: file name})."""

    kind = "IDX"
    names: dict[str, str]

    def files(self) -> dict[str, Path]:
        return {key: self.data_dir / self.names[key] for key in KEYS}

    def paths(self) -> list[Path]:
        return list(self.files().values())

    @cached_property
    def _header(self) -> tuple[np.dtype, tuple[int, ...]]:
        """(dtype, shape) of the training images, read once."""
        return read_header(self.files()["train_images"])

    @property
    def raw_shape(self) -> tuple[int, ...]:
        shape = self._header[1]
        return tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())

    @property
    def raw_dtype(self) -> str:
        return "uint8" if self._header[0] == np.uint8 else "float32"

    def read(self):
        p = self.files()
        shape = self.raw_shape
        parts = []
        for split in ("train", "test"):
            images = read_idx(p[f"{split}_images"])
            labels = read_idx(p[f"{split}_labels"])
            got = images.shape[1:] + ((1,) if images.ndim == 3 else ())
            if images.ndim not in (2, 3, 4) or got != shape:
                raise DataError(f"{p[f'{split}_images']}: expected examples of shape [N, {', '.join(map(str, shape))}]"
                                f", got {list(images.shape)}")
            if labels.ndim != 1 or len(labels) != len(images):
                raise DataError(f"{p[f'{split}_labels']}: {labels.shape[0]} labels for {len(images)} images in "
                                f"{p[f'{split}_images']}; the pair does not match")
            check_labels(labels, self.num_classes, lambda i, f=p[f"{split}_labels"]: f"{f}: entry {i}")
            images = images.reshape(len(images), *shape)
            parts.append((images if images.dtype == np.uint8 else images.astype(np.float32),
                          labels.astype(np.int32)))
        return tuple(parts)

    # ------------------------------------------------------------------ records (TFRecords, see records.py)
    def _records_dir(self) -> Path:
        return self.data_dir / "tfrecords" / f"validation_{self.validation_size}"

    def tfrecords(self, force: bool = False) -> dict[str, Path]:

        self.prepare()
        spec = {"source": {Path(k).name: v for k, v in source_stamp(self.paths()).items()},
                "validation_size": self.validation_size,
                "counts": {split: self.num_examples(split) for split in SPLITS}}
        return ensure_records(self._records_dir(), spec, lambda split, path: write_records(*self.arrays(split), path),
                              force)

    def records(self, split: str) -> Records:
        return Records("tfrecord", (str(self.tfrecords()[split]),))

    convertible = True

    def convert(self) -> dict[str, Path]:
        return self.tfrecords(force=True)

    def damaged_records(self) -> Damage | None:

        found = find_corrupt(sorted(self._records_dir().glob("*.tfrecords")))
        return Damage(found[0], found[1], cache=True) if found else None

    def decode(self, serialized):
        """A batch of serialized tf.train.Example protos -> (images [B, *raw_shape], int32 labels [B])."""

        return parse_examples(serialized, self.raw_shape, self.raw_dtype)


@DATASETS.register("idx")
class Idx(IdxFiles):
    """Any folder of IDX files, described in YAML."""


    def __init__(self, config: IdxConfig):
        super().__init__(config, config.root)
        self.names = {key: getattr(config, key) for key in KEYS}
        self.md5 = dict(config.md5 or {})  # file name -> md5; files not listed are not checked
        self._num_classes = config.num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def fetch(self, missing: list[Path]) -> None:
        raise DataError(f"IDX files missing in dataset.root={self.data_dir}: {', '.join(p.name for p in missing)}. "
                        f"Set dataset.root, or the file names (dataset.train_images, ...)")

    def prepare(self) -> None:
        if self._arrays is None:
            for path in self.paths():
                if path.name in self.md5 and path.exists() and md5sum(path) != self.md5[path.name]:
                    raise DataError(f"{path}: md5 {md5sum(path)} does not match {self.md5[path.name]} given in "
                                    f"dataset.md5; the file changed or is damaged")
        super().prepare()
