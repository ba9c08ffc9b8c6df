"""A user's own data by YAML alone: image folders, TFRecords, CSV, IDX and fixed-length records, each through every
pipeline. Small files are written here in tmp; the images are the embedded digits (learnable by the MLP in a few
hundred steps), as 28x28 RGB."""
from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from runner.cli.app import run
from runner.core.errors import ConfigError, DataError
from runner.datasets.fixed_length import Layout
from runner.datasets.glyphs import generate
from runner.datasets.idx_format import write_idx
from runner.datasets.records import write_records
from runner.pipelines import PIPELINES
from runner.run.data import build_dataset
from tests.helpers import compose, option, pull, run_cli

NUM_TRAIN, NUM_TEST = 600, 120  # a short run learns from these
CONTRACT_TRAIN, CONTRACT_TEST = 200, 60  # the epoch contract holds on these
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]  # sorted: another order
SHAPE = [28, 28, 3]


def _images(seed: int, n: int):
    images, labels = generate(n, seed)
    return np.repeat(images[..., None], 3, axis=-1), labels.astype(np.int32)


def write_image_folder(root: Path, num_train: int, num_test: int) -> Path:
    """train/<class>/ and test/<class>/ of shapes, every other image a JPEG, the rest PNGs."""
    for split, n, seed in (("train", num_train, 1), ("test", num_test, 2)):
        images, labels = _images(seed, n)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            if i % 2:
                (folder / f"{i:05d}.jpg").write_bytes(tf.io.encode_jpeg(image, quality=95).numpy())
            else:
                (folder / f"{i:05d}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def _encoded_examples(path: Path, images, labels) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(images, labels):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[tf.io.encode_png(image).numpy()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            })).SerializeToString())


def write_csv(root: Path, num_train: int, num_test: int) -> Path:
    """Three classes of 4-feature Gaussian clusters; a header; column b has missing values (default 0)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 3, (3, 4))
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", num_train), ("test.csv", num_test)):
        labels = rng.integers(0, 3, n)
        x = centres[labels] + rng.normal(0, 1, (n, 4))
        rows = ["a,b,label,c,d"]
        for i, (row, label) in enumerate(zip(x, labels)):
            b = "" if i % 7 == 0 else f"{row[1]:.4f}"
            rows.append(f"{row[0]:.4f},{b},{label},{row[2]:.4f},{row[3]:.4f}")
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def _cifar100_layout() -> Layout:
    return Layout(tuple(SHAPE), label_bytes=2, label_index=1, order="chw")


def write_files(kind: str, root: Path, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> tuple[str, dict]:
    """Writes a small dataset of ``kind`` under root; returns (dataset name, its settings besides root)."""
    train, test = _images(1, num_train), _images(2, num_test)
    root.mkdir(parents=True, exist_ok=True)
    if kind == "image_folder":
        write_image_folder(root, num_train, num_test)
        return "image_folder", {"image_size": SHAPE[:2]}
    if kind == "image_folder_tfrecords":
        write_image_folder(root, num_train, num_test)
        return "image_folder", {"image_size": SHAPE[:2], "read_from": "tfrecords"}
    if kind == "tfrecord_raw":  # as mode=convert and convert_to_records write them
        write_records(*train, root / "train.tfrecords")
        write_records(*test, root / "test.tfrecords")
        return "tfrecord", {"image_shape": SHAPE}
    if kind == "tfrecord_encoded":
        for i, part in enumerate(np.array_split(np.arange(num_train), 2)):
            _encoded_examples(root / f"train-{i}.tfrecord", train[0][part], train[1][part])
        _encoded_examples(root / "test-0.tfrecord", *test)
        return "tfrecord", {"train_files": ["train-*.tfrecord"], "test_files": ["test-*.tfrecord"],
                            "image_key": "image/encoded", "label_key": "image/class/label", "image_format": "encoded",
                            "image_shape": SHAPE}
    if kind == "csv":
        write_csv(root, num_train, num_test)
        return "csv", {"num_classes": 3, "column_defaults": {"b": 0.0}}
    if kind == "idx":  # 4-d uint8 images, plain IDX; gzipped labels
        write_idx(root / "imgs-train.idx", train[0])
        write_idx(root / "labels-train.idx.gz", train[1].astype(np.uint8))
        write_idx(root / "imgs-test.idx", test[0])
        write_idx(root / "labels-test.idx.gz", test[1].astype(np.uint8))
        return "idx", {"train_images": "imgs-train.idx", "train_labels": "labels-train.idx.gz",
                       "test_images": "imgs-test.idx", "test_labels": "labels-test.idx.gz",
                       "validation_size": num_train // 5}
    if kind == "fixed_length":  # CIFAR-100-like: a coarse and a fine label byte, the fine one is the label
        layout = _cifar100_layout()
        rng = np.random.default_rng(0)
        for i, part in enumerate(np.array_split(np.arange(num_train), 2)):
            layout.write(root / f"train_{i}.bin", train[0][part], train[1][part])
        layout.write(root / "test.bin", *test)
        for path in root.glob("*.bin"):  # the coarse byte: noise the dataset must ignore
            raw = np.fromfile(path, np.uint8).reshape(-1, layout.record_bytes)
            raw[:, 0] = rng.integers(0, 20, len(raw))
            raw.tofile(path)
        return "fixed_length", {"train_files": ["train_*.bin"], "test_files": ["test.bin"], "image_shape": SHAPE,
                                "label_bytes": 2, "label_index": 1}
    raise ValueError(kind)


KINDS = ["image_folder", "image_folder_tfrecords", "tfrecord_raw", "tfrecord_encoded", "csv", "idx", "fixed_length"]


def overrides_for(kind: str, root: Path, *sizes: int) -> list[str]:
    """Writes the files of ``kind`` under root; the command-line overrides that read them."""
    name, settings = write_files(kind, root / "files", *sizes)
    cache = [f"dataset.cache_dir={root / 'cache'}"] if name in ("image_folder", "tfrecord", "csv") else []
    return [f"dataset={name}", f"dataset.root={root / 'files'}", *cache,
            *[_override(k, v) for k, v in settings.items()]]


def _override(key: str, value) -> str:
    """A command-line override (a dict's keys are added one by one: ++dataset.column_defaults.b=0.0)."""
    if isinstance(value, dict):
        return " ".join(f"++dataset.{key}.{k}={json.dumps(v)}" for k, v in value.items())
    return f"dataset.{key}={json.dumps(value)}"


@pytest.fixture(scope="module")
def own(request, tmp_path_factory):
    """(kind, a prepared dataset) for each format."""
    root = tmp_path_factory.mktemp(request.param)
    dataset = build_dataset(compose(*overrides_for(request.param, root, CONTRACT_TRAIN, CONTRACT_TEST)))
    dataset.prepare()
    return request.param, dataset


def _keys(x, labels):
    return [(np.asarray(e, np.float32).tobytes(), int(y)) for e, y in zip(x, labels)]


TF_DATA_KNOBS = [{"num_parallel_reads": 2, "deterministic": False}, {"cache": "disk"}]
KNOB_KINDS = ("tfrecord_encoded", "fixed_length")  # several record files: TFRecords, fixed-length records
# make test: every format through the pipelines that read its files in the graph (tf_data, queue), the pipelines that
# read the prepared arrays (feed_dict, preloaded) on one format each, tf_data's knobs on TFRecords; the slow tier
# runs the whole grid.
FAST_GRID = {("image_folder", "preloaded"), ("csv", "feed_dict"), *((kind, "tf_data") for kind in KINDS),
             *((kind, "queue") for kind in KINDS)}


def _grid() -> list:
    cases = [(kind, name, {}) for kind in KINDS for name in PIPELINES.names()]
    cases += [(kind, "tf_data", knobs) for kind in KNOB_KINDS for knobs in TF_DATA_KNOBS]
    return [pytest.param(kind, name, params, marks=[] if (kind, name) in FAST_GRID and (
        not params or kind == KNOB_KINDS[0]) else [pytest.mark.slow]) for kind, name, params in cases]


@pytest.mark.parametrize("own,pipeline,params", _grid(), indirect=["own"])
def test_every_pipeline_reads_each_format_the_same_and_keeps_the_epoch_contract(own, pipeline, params):
    kind, dataset = own
    x, y = dataset.arrays("test")
    assert len(y) == CONTRACT_TEST and x.shape[1:] == dataset.raw_shape
    if kind != "csv":
        _check_pixels(kind, x, y, *_images(2, CONTRACT_TEST))
    expected = sorted(_keys(dataset.preprocess_np(np.asarray(x), False, None), y))
    batch, batches = pull(dataset, pipeline, "test", 25, training=False, steps=6, **params)  # two passes of 3
    assert batch.num_examples == CONTRACT_TEST
    assert [len(labels) for _, labels in batches] == [25, 25, 10] * 2
    for first in (0, 3):
        seen = [k for images, labels in batches[first:first + 3] for k in _keys(images, labels)]
        assert sorted(seen) == expected  # in-graph decoding gives exactly the cached arrays
    n = dataset.num_examples("train")
    assert n % 20 == 0  # one epoch is whole batches
    _, batches = pull(dataset, pipeline, "train", 20, training=True, steps=n // 20, **params)
    seen = [k for images, labels in batches for k in _keys(images, labels)]
    expected = sorted(_keys(dataset.preprocess_np(np.asarray(dataset.arrays("train")[0]), True, None),
                            dataset.arrays("train")[1]))
    if pipeline == "queue":  # shuffle_batch mixes epochs: most of the split in one epoch's worth of batches
        assert len(set(seen) & set(expected)) > 0.5 * n
    elif not params.get("deterministic", True):  # batches taken as ready: a few may cross the epoch boundary
        assert set(seen) <= set(expected) and len(set(seen)) >= n - 4 * 20
    else:
        assert sorted(seen) == expected


@pytest.mark.parametrize("params", [{"num_parallel_reads": 2}, {"num_parallel_reads": -1, "deterministic": False},
                                    {"cache": "disk"}])
def test_tf_data_workers_read_disjoint_shards_that_cover_the_split_with_each_knob(tmp_path, params):
    from runner.pipelines.base import Shard

    dataset = build_dataset(compose(*overrides_for("fixed_length", tmp_path, CONTRACT_TRAIN, CONTRACT_TEST)))
    n = dataset.num_examples("train")
    shards = []
    for index in range(2):
        graph = tf.Graph()
        with graph.as_default():
            pipeline = PIPELINES.get("tf_data")(option("pipeline", "tf_data", **params), dataset, seed=3,
                                                shard=Shard(index, 2))
            batch = pipeline.build("train", 10, True)
        with tf.compat.v1.Session(graph=graph) as sess:
            batch.on_session(sess)
            seen = [k for _ in range(batch.num_examples // 10) for k in _keys(*sess.run([batch.images,
                                                                                          batch.labels]))]
        assert batch.num_examples == n // 2 and len(set(seen)) == n // 2  # its shard, each example once an epoch
        shards.append(set(seen))
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == n


def _saved_files(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("tf_data/*/data/**/*") if p.is_file()}


def test_a_disk_cache_is_used_by_the_next_run_and_rebuilt_when_its_source_or_itself_changes(tmp_path, caplog):
    overrides = overrides_for("fixed_length", tmp_path, CONTRACT_TRAIN, CONTRACT_TEST)
    dataset = build_dataset(compose(*overrides))
    caplog.set_level("INFO", "runner")
    _, first = pull(dataset, "tf_data", "test", 30, training=False, steps=2, cache="disk")
    assert "Decoding the test split" in caplog.text
    made = _saved_files(tmp_path)
    assert made and [p.parent.name for p in (tmp_path / "files" / "tf_data").glob("*/manifest.json")] == [
        "test-" + next(iter(made)).relative_to(tmp_path / "files" / "tf_data").parts[0].split("-")[1]]
    caplog.clear()  # another run, other settings: the save is loaded as it is
    _, again = pull(dataset, "tf_data", "test", 30, training=False, steps=2, cache="disk", prefetch=1,
                    num_parallel_calls=2)
    assert "Decoding" not in caplog.text and _saved_files(tmp_path) == made
    for (x, y), (ax, ay) in zip(first, again):
        np.testing.assert_array_equal(ay, y)
        np.testing.assert_array_equal(ax, x)
    test_file = tmp_path / "files" / "test.bin"  # a source file changes: the save is made again, from it
    raw = np.fromfile(test_file, np.uint8).reshape(CONTRACT_TEST, -1)
    raw[:, 1] = (raw[:, 1] + 1) % 10  # every label moved on by one
    raw.tofile(test_file)
    dataset = build_dataset(compose(*overrides))
    _, changed = pull(dataset, "tf_data", "test", 30, training=False, steps=2, cache="disk")
    assert f"Rebuilding the saved test split in {tmp_path}" in caplog.text
    assert f"{test_file} changed since the save was made" in caplog.text
    np.testing.assert_array_equal(changed[0][1], (first[0][1] + 1) % 10)
    caplog.clear()  # the save damaged (cut short): made again before it is read
    saved = max(_saved_files(tmp_path), key=lambda p: p.stat().st_size)
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    _, mended = pull(dataset, "tf_data", "test", 30, training=False, steps=2, cache="disk")
    assert "Rebuilding the saved test split" in caplog.text and "truncated or changed" in caplog.text
    np.testing.assert_array_equal(mended[1][1], changed[1][1])


def _check_pixels(kind, x, y, images, labels):
    """The decoded test split holds the images written (an image folder lists them by class, then file name)."""
    png = np.arange(len(labels)) % 2 == 0
    if kind.startswith("image_folder"):
        index = sorted(range(len(labels)), key=lambda i: (CLASSES[labels[i]], i))
        images, png = images[index], png[index]
        labels = np.array([sorted(CLASSES).index(CLASSES[label]) for label in labels[index]])
    assert (y == labels).all()
    diff = np.abs(np.asarray(x, np.int16) - images)
    if kind.startswith("image_folder"):  # PNGs exact; JPEGs close (they smooth the noise)
        assert diff[png].max() == 0 and diff[~png].mean() < 16  # another image: about 80
    else:
        assert diff.max() == 0


def test_labels_and_classes_come_from_the_folders(tmp_path):
    dataset = build_dataset(compose(*overrides_for("image_folder", tmp_path)))
    first = {p.parent.name for p in dataset.split_files("train")[:30]}
    assert len(first) >= 5  # read in a mixed order, so a small shuffle buffer still mixes classes
    assert dataset.class_names == sorted(CLASSES) and dataset.num_classes == 10


SLOW = pytest.mark.slow  # the epoch-contract grid covers reading every format in make test; two formats learn there


@pytest.mark.parametrize("kind,pipeline", [
    pytest.param("image_folder", "tf_data", marks=SLOW), pytest.param("image_folder_tfrecords", "queue", marks=SLOW),
    pytest.param("tfrecord_raw", "preloaded", marks=SLOW), pytest.param("tfrecord_encoded", "tf_data", marks=SLOW),
    ("csv", "queue"), pytest.param("idx", "feed_dict", marks=SLOW), ("fixed_length", "tf_data")])
def test_a_short_run_learns_above_chance(tmp_path, kind, pipeline):
    summary = run(compose(*overrides_for(kind, tmp_path), f"pipeline={pipeline}", "model=mlp", "max_steps=300",
                          "batch_size=40", "optimizer=adam", "optimizer.lr=0.001", "log_every=100",
                          "checkpoint_every=300"),
                  str(tmp_path / "run"))
    chance = 1 / (3 if kind == "csv" else 10)
    assert summary["final_precision"]["test"] > 2 * chance, summary["final_precision"]
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert len(labels) == (3 if kind == "csv" else 10)
    if kind == "image_folder":
        assert labels == {str(i): c for i, c in enumerate(sorted(CLASSES))}


# ---------------------------------------------------------------------------------------------- bad files
def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _rewrite_example(path: Path, index: int, **features) -> None:
    """Replaces record ``index`` of a TFRecord file with an Example of the given features."""
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    feature = {}
    for key, value in features.items():
        feature[key] = (tf.train.Feature(int64_list=tf.train.Int64List(value=[value])) if isinstance(value, int)
                        else tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])))
    records[index] = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) + 1])  # never a whole number of records


# (kind, damage(files folder) -> the file it damaged, what the error says after the file's name)
BAD = {
    "image_folder-missing": ("image_folder", lambda r: (shutil.rmtree(r / "test"), r / "test")[1],
                             r"is not a folder; dataset.root must hold train/<class>/ and test/<class>/"),
    "image_folder-empty": ("image_folder", lambda r: _emptied(_first(r, "train/*/*.jpg")), r": cannot be decoded"),
    "image_folder-truncated": ("image_folder", lambda r: _truncated(_first(r, "train/*/*.png")),
                               r": cannot be decoded"),
    "image_folder-undecodable": ("image_folder", lambda r: _garbage(_first(r, "test/*/*.jpg")), r": cannot be decoded"),
    "image_folder-class": ("image_folder", lambda r: _moved(_first(r, "test/*/*.png"), r / "test" / "eleven"),
                           r" is not a class of"),
    "tfrecord-missing": ("tfrecord_raw", lambda r: _removed(r / "test.tfrecords"), r"Failed to find file"),
    "tfrecord-empty": ("tfrecord_raw", lambda r: _emptied(r / "test.tfrecords"),
                       r": the test split's files hold no records"),
    "tfrecord-truncated": ("tfrecord_raw", lambda r: _truncated(r / "train.tfrecords"), r": record \d+: truncated"),
    "tfrecord-undecodable": ("tfrecord_encoded", lambda r: (_rewrite_example(
        r / "test-0.tfrecord", 7, **{"image/encoded": b"not an image", "image/class/label": 3}),
        r / "test-0.tfrecord")[1], r": record 7: cannot be decoded"),
    "tfrecord-label": ("tfrecord_raw", lambda r: (_rewrite_example(
        r / "test.tfrecords", 5, image_raw=bytes(28 * 28 * 3), label=12), r / "test.tfrecords")[1],
        r": record 5: label 12 is outside 0..9"),
    "csv-missing": ("csv", lambda r: _removed(r / "test.csv"), r"Failed to find file"),
    "csv-empty": ("csv", lambda r: _emptied(r / "train.csv"), r": empty; the first row must hold the column names"),
    "csv-truncated": ("csv", lambda r: (_replace_line(r / "test.csv", 9, "1.0,2.0"), r / "test.csv")[1],
                      r": line 9: cannot be decoded"),
    "csv-undecodable": ("csv", lambda r: (_replace_line(r / "train.csv", 4, "1.0,abc,1,2.0,3.0"), r / "train.csv")[1],
                        r": line 4: cannot be decoded .*abc"),
    "csv-label": ("csv", lambda r: (_replace_line(r / "test.csv", 3, "1.0,2.0,7,2.0,3.0"), r / "test.csv")[1],
                  r": line 3: label 7 is outside 0..2"),
    "idx-missing": ("idx", lambda r: _removed(r / "imgs-test.idx"), r"IDX files missing"),
    "idx-empty": ("idx", lambda r: _emptied(r / "imgs-test.idx"), r"not an IDX file"),
    "idx-truncated": ("idx", lambda r: _truncated(r / "imgs-train.idx"), r"the file is truncated or corrupt"),
    "idx-undecodable": ("idx", lambda r: _garbage(r / "labels-test.idx.gz"), r"cannot be read|not an IDX file"),
    "idx-label": ("idx", lambda r: _idx_label(r / "labels-test.idx.gz", 4, 10), r": entry 4: label 10 is outside 0..9"),
    "fixed_length-missing": ("fixed_length", lambda r: _removed(r / "test.bin"), r"Failed to find file"),
    "fixed_length-empty": ("fixed_length", lambda r: _emptied(r / "train_1.bin"), r"0 bytes is not a whole number"),
    "fixed_length-truncated": ("fixed_length", lambda r: _truncated(r / "test.bin", 0.3),
                               r"bytes is not a whole number"),
    "fixed_length-label": ("fixed_length", lambda r: _fixed_label(r / "test.bin", 6, 10),
                           r": record 6: label 10 is outside 0..9"),
}


def _removed(path: Path) -> Path:
    path.unlink()
    return path


def _emptied(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _truncated(path: Path, keep: float = 0.5) -> Path:
    _truncate(path, keep)
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    return path


def _moved(path: Path, folder: Path) -> Path:
    folder.mkdir()
    return path.rename(folder / path.name).parent


def _idx_label(path: Path, index: int, label: int) -> Path:
    from runner.datasets.idx_format import read_idx

    labels = read_idx(path).copy()
    labels[index] = label
    write_idx(path, labels)
    return path


def _fixed_label(path: Path, index: int, label: int) -> Path:
    layout = _cifar100_layout()
    raw = np.fromfile(path, np.uint8).reshape(-1, layout.record_bytes)
    raw[index, layout.label_index] = label
    raw.tofile(path)
    return path


FAST_BAD = {"image_folder-undecodable", "tfrecord-truncated", "csv-undecodable", "idx-label", "fixed_length-label"}


@pytest.mark.parametrize("case", [c if c in FAST_BAD else pytest.param(c, marks=pytest.mark.slow) for c in sorted(BAD)])
def test_a_bad_file_is_an_error_naming_it_and_nothing_is_cached(tmp_path, case):
    kind, damage, message = BAD[case]
    overrides = overrides_for(kind, tmp_path, 40, 20)
    path = damage(tmp_path / "files")
    with pytest.raises(DataError, match=message) as error:
        run(compose(*overrides, "pipeline=tf_data", "max_steps=1"), str(tmp_path / "run"))
    assert str(path) in str(error.value) or (path.name in str(error.value) and str(path.parent) in str(error.value))
    assert not list((tmp_path / "cache").glob("**/manifest.json")), "a failed conversion left a cache"
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # command-line runs; the same errors are raised in-process in the fast tier
@pytest.mark.parametrize("kind", ["csv", "image_folder", "tfrecord_raw", "idx", "fixed_length"])
def test_the_command_exits_2_within_seconds_naming_a_file_with_a_bad_label(tmp_path, kind):
    case = {"image_folder": "image_folder-class", "tfrecord_raw": "tfrecord-label"}.get(kind, f"{kind}-label")
    _, damage, message = BAD[case]
    overrides = overrides_for(kind, tmp_path, 160, 40)
    path = damage(tmp_path / "files")
    start = time.time()
    proc = run_cli(*overrides, "pipeline=queue", "max_steps=10", f"run_dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(rf"error: .*{re.escape(str(path))}.*({message})", proc.stdout), proc.stdout + proc.stderr
    assert time.time() - start < 20


# ---------------------------------------------------------------------------------------------- towers, bench, convert
@pytest.mark.slow  # towers are in make test on the built-in data
def test_an_image_folder_trains_on_two_towers(tmp_path):
    summary = run(compose(*overrides_for("image_folder", tmp_path, 80, 20), "hardware=cpu2", "pipeline=queue",
                          "pipeline.num_threads=2", "max_steps=10", "batch_size=8", "log_every=10",
                          "eval_splits=[test]"), str(tmp_path / "run"))
    assert summary["steps"] == 10 and summary["final_precision"]["test"] >= 0
    assert len(summary["devices"]) == 2


@pytest.mark.slow
def test_an_image_folder_benches_every_pipeline(tmp_path):
    overrides = overrides_for("image_folder", tmp_path, 160, 40)
    bench = run(compose(*overrides, "mode=bench", "batch_size=16", "bench.warmup_steps=1", "bench.windows=1",
                        "bench.steps_per_window=2"), str(tmp_path / "bench"))
    assert sorted(bench["pipelines"]) == ["autotune", "feed_dict", "preloaded", "queue", "tf_data"]  # and tf.data's own
    assert all(p["train_examples_per_sec"] > 0 for p in bench["pipelines"].values())


@pytest.mark.parametrize("kind", ["image_folder_tfrecords", "idx"])
def test_convert_writes_the_records_the_pipelines_read(tmp_path, kind):
    overrides = overrides_for(kind, tmp_path, 160, 40)
    run(compose(*overrides, "mode=convert", "batch_size=20"), str(tmp_path / "run"))
    written = sorted(p.name for p in (tmp_path / ("cache" if "image" in kind else "files")).glob("**/*.tfrecords"))
    assert written == ["test.tfrecords", "train.tfrecords", "validation.tfrecords"]
    dataset = build_dataset(compose(*overrides))
    files = dataset.records("test").files
    assert len(files) == 1 and files[0].endswith("test.tfrecords")
    count = sum(1 for _ in tf.data.TFRecordDataset(files[0]))
    assert count == dataset.num_examples("test") == 40


@pytest.mark.parametrize("kind", ["csv", "tfrecord_raw", "fixed_length"])
def test_convert_refuses_the_formats_read_as_they_are(tmp_path, kind):
    from runner.core.errors import ConfigError
    from runner.run.validate import validate

    with pytest.raises(ConfigError, match=r"mode=convert writes TFRecords that the queue and tf_data pipelines read"):
        validate(compose(*overrides_for(kind, tmp_path, 20, 20), "mode=convert"))


def test_a_csv_dataset_refuses_a_model_that_needs_images(tmp_path):
    from runner.core.errors import ConfigError
    from runner.run.validate import validate

    with pytest.raises(ConfigError, match=r"model=cifar10_cnn takes images but dataset=csv gives feature vectors of 4 "
                                          r"values; use model=mlp"):
        validate(compose(*overrides_for("csv", tmp_path, 20, 20), "model=cifar10_cnn"))


def test_the_tfrecord_dataset_reads_what_mode_convert_writes(tmp_path, tiny_digits):
    paths = tiny_digits.tfrecords()  # convert_to_records' format: image_raw, label, height, width, depth
    dataset = build_dataset(compose("dataset=tfrecord", f"dataset.root={paths['test'].parent}",
                                    f"dataset.cache_dir={tmp_path}", "dataset.image_shape=[28,28,1]"))
    for split in ("train", "test"):
        got, want = dataset.arrays(split), tiny_digits.arrays(split)
        assert (np.asarray(got[0]) == want[0]).all() and (got[1] == want[1]).all()


def test_idx_checks_the_md5s_it_is_given(tmp_path):
    overrides = overrides_for("idx", tmp_path, 120, 20)
    path = tmp_path / "files" / "imgs-test.idx"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: md5 \w+ does not match 0+ given in dataset.md5"):
        build_dataset(compose(*overrides, f"++dataset.md5={{imgs-test.idx:'{'0' * 32}'}}")).prepare()


def test_every_dataset_implements_the_whole_interface():
    import inspect

    from runner.datasets import DATASETS
    from runner.datasets.base import Dataset

    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert issubclass(cls, Dataset) and not inspect.isabstract(cls), (name, cls.__abstractmethods__)


def test_a_file_damaged_while_a_run_reads_it_is_named(tmp_path):
    from runner.run.runs import naming_damaged_records

    dataset = build_dataset(compose(*overrides_for("csv", tmp_path, 40, 20)))
    dataset.prepare()  # checked and cached; then the file changes under the run
    path = tmp_path / "files" / "test.csv"
    _replace_line(path, 5, "1.0,abc,1,2.0,3.0")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: line 5: cannot be decoded .*abc.*; fix or remove"):
        with naming_damaged_records(dataset):
            pull(dataset, "tf_data", "test", 20, training=False, steps=1)


def test_a_csv_without_a_header_names_columns_by_index(tmp_path):
    overrides = overrides_for("csv", tmp_path, 40, 20)
    for name in ("train.csv", "test.csv"):  # drop the header row; the label is column 2
        path = tmp_path / "files" / name
        path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with_header = build_dataset(compose(*overrides_for("csv", tmp_path / "again", 40, 20)))
    dataset = build_dataset(compose(*overrides, "dataset.header=false", "dataset.label_column=2",
                                    "dataset.feature_columns=[0,1,3,4]", "~dataset.column_defaults.b",
                                    "++dataset.column_defaults.1=0.0"))
    for split in ("train", "test"):
        got, want = dataset.arrays(split), with_header.arrays(split)
        assert (np.asarray(got[0]) == np.asarray(want[0])).all() and (got[1] == want[1]).all()
    assert dataset.raw_shape == (4,)


@pytest.mark.slow  # a sweep (STYLE.md: sweeps in the slow tier)
def test_a_sweep_over_pipelines_on_own_data(tmp_path):
    overrides = overrides_for("csv", tmp_path, 200, 40)
    proc = run_cli("-m", *overrides, "model=mlp", "pipeline=feed_dict,queue,tf_data,preloaded", "max_steps=50",
                   "batch_size=20", "log_every=25", "checkpoint_every=50", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "sweep" / "report.csv").open()))
    assert sorted(r["status"] for r in rows) == ["completed"] * 4


def test_a_csv_with_class_names_as_labels_numbers_them_in_sorted_order(tmp_path):
    """Iris-style labels (setosa, versicolor, virginica): numbered as sorted, read the same by every pipeline,
    written as the run's class names; a count that does not match is refused naming the names."""
    overrides = overrides_for("csv", tmp_path, 60, 30)
    species = ["setosa", "versicolor", "virginica"]
    for name in ("train.csv", "test.csv"):
        path = tmp_path / "files" / name
        lines = path.read_text().splitlines()
        rows = [line.split(",") for line in lines[1:]]
        path.write_text("\n".join([lines[0], *(",".join(r[:2] + [species[int(r[2])]] + r[3:]) for r in rows)]) + "\n")
    numbered = build_dataset(compose(*overrides_for("csv", tmp_path / "numbered", 60, 30)))
    named = build_dataset(compose(*overrides))
    assert named.class_names == species
    for split in ("train", "test"):
        assert (named.arrays(split)[1] == numbered.arrays(split)[1]).all()
    for pipeline in ("tf_data", "queue"):
        (_, labels), = pull(named, pipeline, "test", 10, training=False, steps=1)[1]
        (_, want), = pull(numbered, pipeline, "test", 10, training=False, steps=1)[1]
        assert (labels == want).all(), pipeline
    with pytest.raises(ConfigError, match=r"holds 3 class names \(setosa, versicolor, virginica\): set "
                                          r"dataset.num_classes=3"):
        _ = build_dataset(compose(*overrides, "dataset.num_classes=4")).class_names
