"""A folder of images with one subfolder per class: ``root/train/<class>/*.{jpg,jpeg,png}`` and ``root/test/<class>/``
(``root/validation/<class>/`` too, if present; otherwise ``validation_size`` training images, picked at random with
a fixed seed, form the validation split). Training images are read in a fixed random order. Class names, sorted,
become label ids.

Images are decoded and fitted to ``image_size`` x ``channels`` (:mod:`runner.datasets.images`). The queue and
tf_data pipelines decode in the graph, from the image files (``read_from=files``) or from TFRecords of the encoded
images converted once and cached (``read_from=tfrecords``, the ``image/encoded`` and ``image/class/label``
features); feed_dict and preloaded read the decoded cache (:mod:`runner.datasets.decoded`).
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from runner.config.datasets import ImageFolderConfig
from runner.core.errors import ConfigError, DataError
from runner.core.files import atomic_path
from runner.datasets import DATASETS
from runner.datasets.base import Damage, Records
from runner.datasets.decoded import Decoded
from runner.datasets.images import decode_images, parse_encoded
from runner.datasets.records import ensure_records, find_corrupt

EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGE_KEY, LABEL_KEY = "image/encoded", "image/class/label"
# The training images are read in one fixed random order, not class by class, so a tf.data shuffle buffer smaller
# than the split still mixes classes (as build_image_data does when it writes TFRecords); the first
# validation_size of that order form the validation split. The same order in every run.
ORDER_SEED = 0


@DATASETS.register("image_folder")
class ImageFolder(Decoded):
    kind = "JPEG/PNG"

    def __init__(self, config: ImageFolderConfig):
        super().__init__(config)
        if len(config.image_size) != 2:
            raise ConfigError(f"dataset.image_size={list(config.image_size)} must be [height, width]")
        self.height, self.width = config.image_size
        self.channels = config.channels
        self.fit = config.fit
        self.read_from = config.read_from

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels

    # -------------------------------------------------------------- the folder
    @cached_property
    def class_names(self) -> list[str]:
        train = self.root / "train"
        if not train.is_dir():
            raise DataError(f"{train} is not a folder; dataset.root must hold train/<class>/ and test/<class>/ "
                            f"folders of images")
        names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise DataError(f"{train} has no class folders; put each class's images in train/<class>/")
        return names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _images(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder; dataset.root must hold train/<class>/ and test/<class>/ "
                            f"folders of images")
        found = []
        for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if entry.name not in self.class_names:
                raise DataError(f"{entry} is not a class of {self.root / 'train'} (classes: "
                                f"{', '.join(self.class_names)}); rename or remove it")
            images = sorted(p for p in entry.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
            if not images:  # else a class without examples: one more logit, never a label
                raise DataError(f"{entry} holds no images ({', '.join(sorted(EXTENSIONS))}); add its images or "
                                f"remove the folder")
            found += images
        return found

    @cached_property
    def _listing(self) -> dict[str, list[Path]]:
        train = self._images(self.root / "train")  # by class: read in a mixed order (below)
        if (self.root / "validation").is_dir():
            if self.validation_size:
                raise ConfigError(f"{self.root / 'validation'} is the validation split; dataset.validation_size="
                                  f"{self.validation_size} would take another from train/. Set it to 0")
            validation = self._images(self.root / "validation")
            train = [train[i] for i in np.random.default_rng(ORDER_SEED).permutation(len(train))]
        else:
            if not 0 <= self.validation_size < len(train):
                raise ConfigError(f"dataset.validation_size={self.validation_size} must be smaller than the "
                                  f"{len(train)} training images in {self.root / 'train'}")
            order = np.random.default_rng(ORDER_SEED).permutation(len(train))
            validation = sorted(train[i] for i in order[:self.validation_size])
            train = [train[i] for i in order[self.validation_size:]]
        return {"train": train, "validation": validation, "test": self._images(self.root / "test")}

    def has_validation(self) -> bool:
        return self.validation_size > 0 or (self.root / "validation").is_dir()

    def split_files(self, split: str) -> list[Path]:
        return self._listing[split]

    def settings(self) -> dict:
        return {"image_size": [self.height, self.width], "channels": self.channels, "fit": self.fit,
                "classes": self.class_names, "validation_size": self.validation_size}

    def describe_record(self, file: Path, index: int) -> str:
        return str(file)

    # -------------------------------------------------------------- records
    def source(self, files: list[str]) -> Records:
        return Records("file", tuple(files))

    def records(self, split: str) -> Records:
        if self.read_from == "files":
            return super().records(split)
        return Records("tfrecord", (str(self._tfrecords()[split]),))

    def _tfrecords(self, force: bool = False) -> dict[str, Path]:

        self.prepare()  # stamps the source files once (sources_digest)
        spec = {"classes": self.class_names, "sources": self.sources_digest}
        out = self.cache_dir / "tfrecords" / f"validation_{self.validation_size}"
        return ensure_records(out, spec, self._write_tfrecords, force)

    def _write_tfrecords(self, split: str, path: Path) -> None:
        import tensorflow as tf


        labels = self.arrays(split)[1]
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for file, label in zip(self.split_files(split), labels):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[file.read_bytes()])),
                    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                })).SerializeToString())

    convertible = True

    def convert(self) -> dict[str, Path]:
        return self._tfrecords(force=True)

    def damaged_records(self) -> Damage | None:
        if self.read_from == "tfrecords":

            found = find_corrupt(sorted((self.cache_dir / "tfrecords").glob("*/*.tfrecords")))
            if found:
                return Damage(found[0], found[1], cache=True)
        return super().damaged_records()

    # -------------------------------------------------------------- decoding
    def decode_source(self, paths):
        """Image file names [B] -> (uint8 images [B, H, W, C], int32 labels [B] from the class folder names)."""
        import tensorflow as tf

        contents = tf.map_fn(tf.io.read_file, paths)
        folders = tf.strings.regex_replace(paths, r"^(?:.*/)?([^/]+)/[^/]+$", r"\1")
        matches = tf.equal(folders[:, None], tf.constant(self.class_names)[None, :])
        labels = tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=1), tf.int32)
        return self._fit(contents), labels

    def _fit(self, contents):
        return decode_images(contents, self.height, self.width, self.channels, self.fit)

    def decode(self, records):
        if self.read_from == "files":
            return self.decode_source(records)
        contents, labels = parse_encoded(records, IMAGE_KEY, LABEL_KEY)
        return self._fit(contents), labels
