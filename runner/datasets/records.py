"""Splits to TFRecords, as convert_to_records: one tf.train.Example per example with height, width, depth, label
and image_raw. Records are cached with a manifest, and rebuilt when what they are made from (source files,
validation split, decoding settings) changes, or when a record file is missing, truncated or changed."""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runner.config.schema import SPLITS
from runner.core.errors import DataError
from runner.core.files import Manifest, atomic_path, folder_lock, full_disk

log = logging.getLogger("runner")


def write_records(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike) -> None:
    """Writes images [N, H, W, D] (or vectors [N, F]) and labels [N] as Example protos, atomically. image_raw holds
    each example's bytes in its array's dtype (uint8 pixels, as convert_to_records)."""
    import tensorflow as tf

    if len(images) != len(labels):
        raise DataError(f"images size {len(images)} does not match labels size {len(labels)} for {path}")
    height, width, depth = (*images.shape[1:], 1, 1)[:3]

    def _int64(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for image, label in zip(images, labels):
            example = tf.train.Example(features=tf.train.Features(feature={
                "height": _int64(height), "width": _int64(width), "depth": _int64(depth), "label": _int64(label),
                "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
            }))
            writer.write(example.SerializeToString())


def parse_examples(serialized, shape: tuple[int, ...], dtype: str = "uint8", image_key: str = "image_raw",
                   label_key: str = "label"):
    """A batch [B] of serialized Examples -> (examples [B, *shape] of dtype, int32 labels [B])."""
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, {image_key: tf.io.FixedLenFeature([], tf.string),
                                              label_key: tf.io.FixedLenFeature([], tf.int64)})
    examples = tf.reshape(tf.io.decode_raw(parsed[image_key], tf.dtypes.as_dtype(dtype)), [-1, *shape])
    return examples, tf.cast(parsed[label_key], tf.int32)


def source_stamp(paths: list[Path]) -> dict:
    """Size and mtime of each source file: a cache made from them is stale when one changes."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def ensure_records(out: Path, spec: dict, write: Callable[[str, Path], None], force: bool = False
                   ) -> dict[str, Path]:
    """Returns {split: path} of the TFRecords in ``out``, first writing each with ``write(split, path)`` when they
    are missing, stale (``spec``, what they are made from, changed) or damaged (checked against their manifest), or
    when ``force``. One process converts; parallel jobs wait for it and read."""
    paths = {split: out / f"{split}.tfrecords" for split in SPLITS}
    manifest = Manifest(out / "manifest.json", out)
    if not force and manifest.problem(spec, list(paths.values())) is None:
        return paths  # no lock needed: a complete, read-only cache is usable
    with folder_lock(out):
        problem = manifest.problem(spec, list(paths.values()))
        if force or problem:
            if problem and any(p.exists() for p in paths.values()):
                log.info("Rebuilding the TFRecords in %s: %s", out, problem)
            manifest.invalidate()
            for split, path in paths.items():
                log.info("Writing %s", path)
                try:
                    write(split, path)
                except OSError as err:
                    raise full_disk(out, "TFRecords", err) from None
                except Exception as err:
                    import tensorflow as tf  # loaded: it was writing the records

                    if not isinstance(err, tf.errors.ResourceExhaustedError):  # its writer's "no space left"
                        raise
                    raise full_disk(out, "TFRecords", err) from None
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
