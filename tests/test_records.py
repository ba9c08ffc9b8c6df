"""Unit: TFRecord conversion round trip, caching and rebuilding when the source changes."""
import os

import numpy as np
import pytest
import tensorflow as tf

from runner.core.errors import DataError
from runner.datasets.records import parse_examples, write_records


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.int32)
    write_records(images, labels, tmp_path / "x.tfrecords")
    serialized = list(tf.data.TFRecordDataset(str(tmp_path / "x.tfrecords")).batch(100))[0]
    got_images, got_labels = parse_examples(serialized, (28, 28, 1))
    np.testing.assert_array_equal(got_images.numpy(), images)
    np.testing.assert_array_equal(got_labels.numpy(), labels)
    example = tf.train.Example.FromString(serialized[0].numpy())
    features = example.features.feature
    assert [features[k].int64_list.value[0] for k in ("height", "width", "depth")] == [28, 28, 1]
    assert features["image_raw"].bytes_list.value[0] == images[0].tobytes()


def test_image_and_label_counts_must_match(tmp_path):
    with pytest.raises(DataError, match="images size 3 does not match labels size 2"):
        write_records(np.zeros((3, 2, 2, 1), np.uint8), np.zeros(2), tmp_path / "x.tfrecords")


def test_records_are_cached_and_rebuilt_when_the_source_changes(tiny_digits):
    paths = tiny_digits.tfrecords()
    assert {split: sum(1 for _ in tf.data.TFRecordDataset(str(p))) for split, p in paths.items()} == \
        {"train": 1000, "validation": 200, "test": 300}
    mtimes = {p: p.stat().st_mtime_ns for p in paths.values()}
    assert tiny_digits.tfrecords() == paths
    assert {p: p.stat().st_mtime_ns for p in paths.values()} == mtimes  # cached: not rewritten
    source = tiny_digits.files()["test_labels"]
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    tiny_digits.tfrecords()
    assert paths["test"].stat().st_mtime_ns != mtimes[paths["test"]]
