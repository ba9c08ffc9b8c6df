"""The dataset group's schemas: the generated and downloaded datasets, and a user's own files described in YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from runner.config.fields import EVAL, RESUME, bounded, one_of, setting, sizes


# ---------------------------------------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    name: str = MISSING
    validation_size: int = bounded(0)  # the first N training examples form the validation split
    augment: str = one_of("none", "cifar10")  # none: pixels scaled to [0, 1]; cifar10: the tutorial's distortions


@dataclass
class StoredDatasetConfig(DatasetConfig):
    data_dir: str = setting(RESUME, EVAL)  # where the files live (or are downloaded/generated to)


@dataclass
class DigitsConfig(StoredDatasetConfig):
    num_train: int = bounded(1)  # generated training examples (validation included)
    num_test: int = bounded(1)
    generator_seed: int = bounded(0)  # the data are a pure function of this seed and the sizes


@dataclass
class ShapesConfig(StoredDatasetConfig):
    num_train: int = bounded(1)  # generated training records, spread over data_batch_1..5.bin
    num_test: int = bounded(1)
    generator_seed: int = bounded(0)


@dataclass
class Cifar10Config(StoredDatasetConfig):
    download: bool = setting(RESUME, EVAL)  # fetch cifar-10-binary.tar.gz when neither batches nor archive are there
    url: str = setting(RESUME)


@dataclass
class MnistConfig(StoredDatasetConfig):
    download: bool = setting(RESUME, EVAL)  # fetch missing files from the mirrors
    mirrors: list[str] = setting(RESUME)  # base URLs, tried in order
    verify_md5: bool = MISSING  # false: read other MNIST-format files in data_dir (Fashion-MNIST, a re-split)


@dataclass
class OwnDatasetConfig(DatasetConfig):
    """A user's own files, described in YAML."""

    root: str = setting(RESUME, EVAL)  # the folder of the files; file names and globs are relative to it


@dataclass
class DecodedDatasetConfig(OwnDatasetConfig):
    cache_dir: str = setting(RESUME, EVAL)  # where the decoded arrays (and converted TFRecords) are cached


@dataclass
class ImageFolderConfig(DecodedDatasetConfig):
    image_size: list[int] = sizes(2)  # [height, width] every image is fitted to
    channels: int = one_of(1, 3, 4)  # 1 grey, 3 RGB, 4 RGBA (PNGs; converted as needed)
    fit: str = one_of("resize", "center_crop")
    read_from: str = one_of("files", "tfrecords", tags=(RESUME, EVAL))  # what queue and tf_data read: images, TFRecords


@dataclass
class TfRecordConfig(DecodedDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    image_key: str = MISSING  # the bytes feature of the image
    label_key: str = MISSING  # the int64 feature of the label
    image_format: str = one_of("raw", "encoded")  # raw pixels, or an encoded JPEG/PNG
    image_shape: list[int] = sizes(3)  # raw: the stored shape; encoded: [height, width, channels] to fit to
    image_dtype: str = one_of("uint8", "float32")  # raw pixels' type
    fit: str = one_of("resize", "center_crop")  # encoded images
    compression: str = one_of("none", "GZIP", "ZLIB")
    num_classes: int = bounded(1)


@dataclass
class CsvConfig(DecodedDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    header: bool = MISSING  # each file starts with a row of column names
    label_column: str = MISSING  # a column name (with a header) or a 0-based index
    feature_columns: Optional[list[str]] = MISSING  # names or indices; null: every column but the label
    column_defaults: dict[str, float] = MISSING  # column -> value for missing entries; others are required
    field_delim: str = field(default=MISSING, metadata={"blank": True})  # "," or a tab, a space, ...
    num_classes: int = bounded(1)


@dataclass
class IdxConfig(OwnDatasetConfig):
    train_images: str = MISSING  # file names under root (.gz: gzipped)
    train_labels: str = MISSING
    test_images: str = MISSING
    test_labels: str = MISSING
    md5: dict[str, str] = MISSING  # file name -> md5 to check; files not listed are not checked
    num_classes: int = bounded(1)


@dataclass
class FixedLengthConfig(OwnDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    image_shape: list[int] = sizes(3)  # [height, width, channels]
    order: str = one_of("chw", "hwc")  # how image bytes are stored: channels first (CIFAR) or last
    header_bytes: int = bounded(0)  # bytes before the first record of each file
    label_bytes: int = bounded(1)  # label bytes at the start of each record (CIFAR-100: 2)
    label_index: int = bounded(0)  # which label byte is the label (CIFAR-100: 0 coarse, 1 fine)
    num_classes: int = bounded(1)
