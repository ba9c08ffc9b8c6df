"""TFRecord files of tf.train.Example protos, written by any tool: ``train_files`` and ``test_files`` are globs under
``root``; the image is a bytes feature (``image_key``) holding raw pixels (``image_format=raw``: ``image_shape`` and
``image_dtype``, as convert_to_records and ``mode=convert`` write them) or an encoded JPEG/PNG
(``image_format=encoded``: decoded and fitted to ``image_shape``); the label an int64 feature (``label_key``).
The validation split is the head of the training records (feed_dict and preloaded only)."""
from __future__ import annotations

from pathlib import Path

from runner.config.datasets import TfRecordConfig
from runner.core.errors import ConfigError, DataError, op_error_text
from runner.datasets import DATASETS
from runner.datasets.base import Records, match
from runner.datasets.decoded import Decoded
from runner.datasets.images import decode_images, parse_encoded
from runner.datasets.records import parse_examples


@DATASETS.register("tfrecord")
class TfRecord(Decoded):
    kind = "TFRecord"
    files_hold_validation = False

    def __init__(self, config: TfRecordConfig):
        super().__init__(config)
        image_format, image_shape = config.image_format, config.image_shape
        if image_format == "encoded" and len(image_shape) != 3:
            raise ConfigError(f"dataset.image_shape={list(image_shape)}: encoded images are decoded to [height, "
                              f"width, channels]")
        self.patterns = {"train": list(config.train_files), "test": list(config.test_files)}
        self.image_key, self.label_key = config.image_key, config.label_key
        self.image_format = image_format
        self.image_shape = tuple(image_shape)
        self.image_dtype = "uint8" if image_format == "encoded" else config.image_dtype
        self.fit = config.fit
        self.compression = "" if config.compression == "none" else config.compression
        self._num_classes = config.num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def raw_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def raw_dtype(self) -> str:
        return self.image_dtype

    def split_files(self, split: str) -> list[Path]:
        return [] if split == "validation" else match(self.root, self.patterns[split])

    def settings(self) -> dict:
        return {"image_key": self.image_key, "label_key": self.label_key, "image_format": self.image_format,
                "image_shape": list(self.image_shape), "image_dtype": self.image_dtype, "fit": self.fit,
                "compression": self.compression}

    def source(self, files: list[str]) -> Records:
        return Records("tfrecord", tuple(files), compression=self.compression)

    def decode_files(self, files: list[Path]):
        """Also refuses a file that ends inside a record, which TFRecordDataset would drop without a word."""
        import tensorflow as tf

        for file in files if not self.compression else []:
            count = size = 0
            try:
                for record in tf.data.TFRecordDataset(str(file)).as_numpy_iterator():
                    count, size = count + 1, size + len(record) + 16  # length, its CRC, the data, its CRC
            except tf.errors.OpError as err:  # DataLossError: a record cut short or a byte changed (its CRC)
                raise DataError(f"{file}: record {count}: cannot be read ({op_error_text(err)}); the file is damaged "
                                f"(write or copy it again) or compressed (set dataset.compression)") from None
            if size != file.stat().st_size:
                raise DataError(f"{file}: record {count}: truncated (the file ends {file.stat().st_size - size} "
                                f"bytes into it); the file is incomplete, write or copy it again")
        return super().decode_files(files)

    def decode(self, serialized):
        if self.image_format == "raw":
            return parse_examples(serialized, self.image_shape, self.image_dtype, self.image_key, self.label_key)
        contents, labels = parse_encoded(serialized, self.image_key, self.label_key)
        return decode_images(contents, *self.image_shape, self.fit), labels
