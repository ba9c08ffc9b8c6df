"""Unit: md5-verified, atomic downloads from a local HTTP server on 127.0.0.1, and MNIST fetching."""
import hashlib

import numpy as np
import pytest

from runner.core.errors import DataError
from runner.datasets.download import download
from runner.datasets.idx_format import write_idx
from runner.datasets.mnist import Mnist
from tests.helpers import option


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_verifies_md5(server, tmp_path):
    url, www = server
    (www / "f.bin").write_bytes(b"payload" * 1000)
    path = download("f.bin", tmp_path / "dest", [url], md5(b"payload" * 1000))
    assert path.read_bytes() == b"payload" * 1000


def test_corrupted_file_is_rejected_and_nothing_is_left(server, tmp_path):
    url, www = server
    (www / "f.bin").write_bytes(b"corrupted")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="md5 mismatch"):
        download("f.bin", dest, [url], md5(b"the real thing"))
    assert list(dest.iterdir()) == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    url, www = server
    (www / "good").mkdir()
    (www / "good" / "f.bin").write_bytes(b"ok")
    path = download("f.bin", tmp_path / "d", [url + "missing/", url + "good/"], md5(b"ok"))
    assert path.read_bytes() == b"ok"


def test_all_mirrors_failing_names_each(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError, match=r"(?s)could not download f\.bin.*missing/f\.bin.*404"):
        download("f.bin", tmp_path / "d", [url + "missing/"], md5(b"x"))


def _mnist_files(folder, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train).astype(np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test).astype(np.uint8)}
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return {name: md5((folder / name).read_bytes()) for name in arrays}, arrays


def test_mnist_downloads_missing_files_and_splits_validation(server, tmp_path):
    url, www = server
    sums, arrays = _mnist_files(www)
    dataset = Mnist(option("dataset", "mnist", data_dir=str(tmp_path / "mnist"), validation_size=5, mirrors=[url]),
                    md5=sums)
    images, labels = dataset.arrays("validation")
    np.testing.assert_array_equal(images[..., 0], arrays["train-images-idx3-ubyte.gz"][:5])
    assert dataset.num_examples("train") == 25 and dataset.num_examples("test") == 10
    assert labels.dtype == np.int32


def test_mnist_without_download_says_where_it_looked(tmp_path):
    dataset = Mnist(option("dataset", "mnist", data_dir=str(tmp_path / "empty"), download=False,
                           mirrors=["http://127.0.0.1:9/"]))
    with pytest.raises(DataError, match=r"(?s)missing in .*empty.*dataset\.download=true"):
        dataset.prepare()


def test_mnist_rejects_a_local_file_with_the_wrong_md5(tmp_path):
    sums, _ = _mnist_files(tmp_path)
    sums["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    with pytest.raises(DataError, match=r"t10k-labels.*md5"):
        Mnist(option("dataset", "mnist", data_dir=str(tmp_path)), md5=sums).prepare()


def test_other_mnist_format_files_need_verify_md5_false(tmp_path):
    """Fashion-MNIST or a re-split uses MNIST's names and format but not its md5s: the error names the setting."""
    _, arrays = _mnist_files(tmp_path)
    with pytest.raises(DataError, match=r"does not match the published .*set dataset\.verify_md5=false"):
        Mnist(option("dataset", "mnist", data_dir=str(tmp_path))).prepare()
    dataset = Mnist(option("dataset", "mnist", data_dir=str(tmp_path), validation_size=5, verify_md5=False))
    images, labels = dataset.arrays("test")
    np.testing.assert_array_equal(images[..., 0], arrays["t10k-images-idx3-ubyte.gz"])
    assert dataset.num_examples("train") == 25


def test_mismatched_image_and_label_counts(tmp_path):
    sums, _ = _mnist_files(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    sums["t10k-labels-idx1-ubyte.gz"] = md5((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="3 labels for 10 images"):
        Mnist(option("dataset", "mnist", data_dir=str(tmp_path)), md5=sums).prepare()
