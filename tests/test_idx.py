"""Unit: the IDX reader and writer (headers, big-endian sizes, gz), and the generated digits."""
import gzip
import struct

import numpy as np
import pytest

from runner.core.errors import DataError
from runner.datasets.glyphs import generate
from runner.datasets.idx_format import read_idx, write_idx


def test_reads_big_endian_header_and_uint8_data(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + data.tobytes()
    (tmp_path / "x.idx").write_bytes(raw)
    with gzip.open(tmp_path / "x.idx.gz", "wb") as f:
        f.write(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), data)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx.gz"), data)


def test_multibyte_types_are_big_endian(tmp_path):
    raw = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">2i", 258, -3)
    (tmp_path / "i.idx").write_bytes(raw)
    assert read_idx(tmp_path / "i.idx").tolist() == [258, -3]


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_read_round_trip(tmp_path, name):
    data = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, data)
    np.testing.assert_array_equal(read_idx(tmp_path / name), data)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_truncated_file_is_rejected_naming_it(tmp_path):
    write_idx(tmp_path / "t.idx", np.zeros((10, 4), np.uint8))
    (tmp_path / "t.idx").write_bytes((tmp_path / "t.idx").read_bytes()[:-3])
    with pytest.raises(DataError, match=r"t\.idx.*truncated"):
        read_idx(tmp_path / "t.idx")


@pytest.mark.parametrize("content", [b"", b"\x01\x02\x03\x04", b"\x00\x00\x08\x03\x00"])
def test_malformed_headers_are_rejected(tmp_path, content):
    (tmp_path / "bad.idx").write_bytes(content)
    with pytest.raises(DataError, match="bad.idx"):
        read_idx(tmp_path / "bad.idx")


def test_corrupt_gzip_is_rejected(tmp_path):
    (tmp_path / "c.idx.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="c.idx.gz"):
        read_idx(tmp_path / "c.idx.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.idx")


def test_generated_digits_are_deterministic_and_learnable_but_not_trivial():
    images, labels = generate(3000, seed=7)
    again, labels_again = generate(3000, seed=7)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert images.shape == (3000, 28, 28) and images.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.shape == (10,) and counts.min() > 200  # every digit, roughly balanced
    assert not np.array_equal(generate(100, seed=8)[0], images[:100])
    # A nearest-centroid classifier: far above chance (0.1), far below perfect.
    x = images.reshape(len(images), -1).astype(np.float32) / 255
    train, test = slice(0, 2000), slice(2000, None)
    centroids = np.stack([x[train][labels[train] == k].mean(0) for k in range(10)])
    predicted = ((x[test][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = (predicted == labels[test]).mean()
    assert 0.4 < accuracy < 0.9, accuracy
