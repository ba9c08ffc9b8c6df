"""MNIST to TFRecords, as convert_to_records: one tf.train.Example per image with height, width, depth, label and
image_raw. Records are cached beside the data with a manifest, and rebuilt when the source files or the
validation split change, or when a record file is missing, truncated or changed."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from runner.datasets.files import Manifest, atomic_path, folder_lock
from runner.errors import DataError

log = logging.getLogger("runner")
SPLITS = ("train", "validation", "test")


def _features() -> dict:
    import tensorflow as tf

    spec = {key: tf.io.FixedLenFeature([], tf.int64) for key in ("height", "width", "depth", "label")}
    return {**spec, "image_raw": tf.io.FixedLenFeature([], tf.string)}


def write_records(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike) -> None:
    """Writes uint8 images [N, H, W, D] and labels [N] as Example protos, atomically."""
    import tensorflow as tf

    if len(images) != len(labels):
        raise DataError(f"images size {len(images)} does not match labels size {len(labels)} for {path}")
    _, height, width, depth = images.shape

    def _int64(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for image, label in zip(images, labels):
            example = tf.train.Example(features=tf.train.Features(feature={
                "height": _int64(height), "width": _int64(width), "depth": _int64(depth), "label": _int64(label),
                "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
            }))
            writer.write(example.SerializeToString())


def parse_examples(serialized, image_shape: tuple[int, int, int]):
    """A batch [B] of serialized Examples -> (uint8 images [B, H, W, D], int32 labels [B])."""
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, _features())
    images = tf.reshape(tf.io.decode_raw(parsed["image_raw"], tf.uint8), [-1, *image_shape])
    return images, tf.cast(parsed["label"], tf.int32)


def _spec(dataset) -> dict:
    """What the records are made from: the source files (size and mtime), the split and the counts."""
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in dataset.paths()}
    counts = {split: dataset.num_examples(split) for split in SPLITS}
    return {"source": files, "validation_size": dataset.validation_size, "counts": counts}


def records_dir(dataset) -> Path:
    return dataset.data_dir / "tfrecords" / f"validation_{dataset.validation_size}"


def ensure_records(dataset, force: bool = False) -> dict[str, Path]:
    """Returns {split: path} of the dataset's TFRecords, converting first when they are missing, stale or
    damaged (checked against their manifest), or when ``force``."""
    out = records_dir(dataset)
    paths = {split: out / f"{split}.tfrecords" for split in SPLITS}
    manifest = Manifest(out / "manifest.json", out)
    dataset.prepare()
    spec = _spec(dataset)
    if not force and manifest.problem(spec, list(paths.values())) is None:
        return paths  # no lock needed: a complete, read-only cache is usable
    with folder_lock(out):  # parallel jobs: one converts, the others wait and read
        problem = manifest.problem(spec, list(paths.values()))
        if force or problem:
            if problem and any(p.exists() for p in paths.values()):
                log.info("Rebuilding the TFRecords in %s: %s", out, problem)
            manifest.invalidate()
            for split, path in paths.items():
                log.info("Writing %s", path)
                write_records(*dataset.arrays(split), path)
            manifest.write(spec, list(paths.values()))
    return paths


def find_corrupt(paths: list[str | os.PathLike]) -> tuple[str, str] | None:
    """(path, what is wrong) of the first TFRecord file whose records fail their checksums, else None."""
    import tensorflow as tf

    for path in paths:
        try:
            tf.data.TFRecordDataset(str(path)).reduce(0, lambda n, _: n + 1).numpy()
        except tf.errors.DataLossError as err:  # "{{function_node ...}} corrupted record at N [Op:...]"
            message = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", err.message.splitlines()[0])
            return str(path), message
    return None
