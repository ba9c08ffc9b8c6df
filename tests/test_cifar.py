"""CIFAR-10: the binary format, the archive, the shapes dataset, the tutorial's preprocessing and model."""
import hashlib
import io
import os
import tarfile
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from runner.core.errors import DataError, RunnerError
from runner.datasets import cifar_preprocess as cp
from runner.datasets.cifar10 import Cifar10
from runner.datasets.cifar_format import RECORD_BYTES, read_records, write_records
from runner.datasets.shapes import Shapes, generate
from runner.engine.session import session
from runner.models import MODELS
from runner.pipelines import PIPELINES
from tests.helpers import option

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    dataset = Shapes(option("dataset", "shapes", data_dir=str(tmp_path_factory.mktemp("shapes")), num_train=500,
                                  num_test=130))
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------------------------- format
def test_records_are_label_then_depth_major_pixels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_records(tmp_path / "b.bin", images, np.array([7, 0, 9]))
    raw = (tmp_path / "b.bin").read_bytes()
    assert len(raw) == 3 * RECORD_BYTES and raw[0] == 7 and raw[RECORD_BYTES] == 0
    assert raw[1:1025] == images[0, :, :, 0].tobytes()  # the red plane, row-major
    assert raw[2049:3073] == images[0, :, :, 2].tobytes()
    got_images, got_labels = read_records(tmp_path / "b.bin")
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.tolist() == [7, 0, 9]


def test_a_file_that_is_not_whole_records_is_rejected_naming_it(tmp_path):
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x01" * (2 * RECORD_BYTES + 100))
    with pytest.raises(DataError, match=r"data_batch_3\.bin: 6246 bytes is not a whole number of 3073-byte"):
        read_records(tmp_path / "data_batch_3.bin")


def test_decode_in_the_graph_matches_numpy(tiny_shapes):
    raw = open(tiny_shapes.records("test").files[0], "rb").read()[:5 * RECORD_BYTES]
    records = tf.constant([raw[i * RECORD_BYTES:(i + 1) * RECORD_BYTES] for i in range(5)])
    images, labels = tiny_shapes.decode(records)
    np.testing.assert_array_equal(images.numpy(), tiny_shapes.arrays("test")[0][:5])
    np.testing.assert_array_equal(labels.numpy(), tiny_shapes.arrays("test")[1][:5])


def _archive(tmp_path) -> tuple[bytes, dict]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "src" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    contents = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images, labels = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 4)
        write_records(folder / name, images, labels)
        contents[name] = (images, labels)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    return buf.getvalue(), contents


def test_downloads_verifies_and_extracts_the_archive(server, tmp_path):  # noqa: F811
    url, www = server
    archive, contents = _archive(tmp_path)
    (www / "cifar-10-binary.tar.gz").write_bytes(archive)
    dataset = Cifar10(option("dataset", "cifar10", data_dir=str(tmp_path / "data"),
                               url=url + "cifar-10-binary.tar.gz"), md5=hashlib.md5(archive).hexdigest())
    assert dataset.num_examples("train") == 20 and dataset.num_examples("test") == 4
    np.testing.assert_array_equal(dataset.arrays("test")[0], contents["test_batch.bin"][0])


def test_a_corrupted_archive_is_rejected(server, tmp_path):  # noqa: F811
    url, www = server
    (www / "cifar-10-binary.tar.gz").write_bytes(b"not the archive")
    dataset = Cifar10(option("dataset", "cifar10", data_dir=str(tmp_path / "data"),
                               url=url + "cifar-10-binary.tar.gz"))
    with pytest.raises(DataError, match="md5 mismatch"):
        dataset.prepare()
    assert [p.name for p in (tmp_path / "data").iterdir()] == [".lock"]  # nothing half-written


def test_an_archive_already_there_is_extracted_without_network(tmp_path):
    archive, _ = _archive(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-binary.tar.gz").write_bytes(archive)
    dataset = Cifar10(option("dataset", "cifar10", data_dir=str(tmp_path / "data"), download=False),
                      md5=hashlib.md5(archive).hexdigest())
    assert dataset.num_examples("train") == 20


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match=r"Failed to find file: .*data_batch_1\.bin.*dataset\.download=true"):
        Cifar10(option("dataset", "cifar10", data_dir=str(tmp_path), download=False)).prepare()


def test_shapes_are_deterministic_balanced_and_not_linearly_separable():
    images, labels = generate(3000, seed=1)
    np.testing.assert_array_equal(images, generate(3000, seed=1)[0])
    assert images.shape == (3000, 32, 32, 3) and min(np.bincount(labels, minlength=10)) > 200
    pixels = images.reshape(3000, -1, 3).astype(np.float32) / 255
    colour = np.c_[pixels.mean(1), pixels.std(1), np.ones(3000)]  # each image's colour statistics
    w = np.linalg.lstsq(colour[:2500], np.eye(10)[labels[:2500]], rcond=None)[0]
    assert ((colour[2500:] @ w).argmax(1) == labels[2500:]).mean() < 0.2  # colour carries no label (chance: 0.1)


# ---------------------------------------------------------------------------------------------- preprocessing
def _batch(n=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_tf_and_numpy_agree_exactly_on_the_same_draws():
    images = _batch()
    draws = cp.sample_np(len(images), 32, 32, np.random.default_rng(1))
    expected = cp.apply_np(images, draws)
    got = cp.apply_tf(tf.constant(images), cp.Draws(*map(tf.constant, draws))).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(cp.eval_tf(tf.constant(images)).numpy(), cp.eval_np(images), atol=2e-5)


def test_batched_ops_equal_the_tutorials_per_image_ops():
    images = _batch(8)
    draws = cp.sample_np(8, 32, 32, np.random.default_rng(2))
    batched = cp.apply_np(images, draws)
    for i in range(8):
        x = tf.cast(images[i], tf.float32)[draws.top[i]:draws.top[i] + 24, draws.left[i]:draws.left[i] + 24]
        x = tf.image.flip_left_right(x) if draws.flip[i] else x
        x = tf.image.adjust_contrast(tf.image.adjust_brightness(x, draws.brightness[i]), draws.contrast[i])
        np.testing.assert_allclose(tf.image.per_image_standardization(x).numpy(), batched[i], atol=2e-5)
    central = tf.image.resize_with_crop_or_pad(tf.cast(images, tf.float32), 24, 24)
    np.testing.assert_allclose(tf.image.per_image_standardization(central).numpy(), cp.eval_np(images), atol=2e-5)


def test_random_draws_have_the_tutorials_distribution_in_both():
    n = 20000
    drawn_np = cp.sample_np(n, 32, 32, np.random.default_rng(3))
    tf.random.set_seed(3)  # the same draws every run: a distribution test that cannot fail by chance
    drawn_tf = [t.numpy() for t in cp.sample_tf(n, 32, 32)]
    for d in (drawn_np, drawn_tf):
        top, left, flip, brightness, contrast = map(np.asarray, d)
        for offsets in (top, left):
            assert set(np.unique(offsets)) == set(range(9))
            assert abs(np.bincount(offsets).min() / n - 1 / 9) < 0.01
        assert abs(flip.mean() - 0.5) < 0.02
        assert -63 <= brightness.min() < -62 and 62 < brightness.max() <= 63 and abs(brightness.mean()) < 1.5
        # the mean of n uniform draws on [0.2, 1.8] has sd 1.6 / sqrt(12 n) = 0.0033: 0.017 is 5 sd
        assert 0.2 <= contrast.min() < 0.21 and 1.79 < contrast.max() <= 1.8 and abs(contrast.mean() - 1) < 0.017
        assert np.corrcoef(top, left)[0, 1] < 0.05  # independent draws


@pytest.mark.parametrize("training", [True, False])
def test_preprocessing_runs_eagerly_and_inside_tf_data(training):
    images = _batch(10)
    eager = cp.preprocess_tf(tf.constant(images), training)
    mapped = next(iter(tf.data.Dataset.from_tensors(images).map(lambda x: cp.preprocess_tf(x, training))))
    for out in (eager, mapped):
        assert out.shape == (10, 24, 24, 3) and out.dtype == tf.float32
        np.testing.assert_allclose(out.numpy().mean((1, 2, 3)), 0, atol=1e-4)  # standardized per image
    if not training:
        np.testing.assert_allclose(eager.numpy(), mapped.numpy())


# ---------------------------------------------------------------------------------------------- model
def _build_cnn(training: bool, weight_decay=0.004):
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 24, 24, 3])
        logits = MODELS.get("cifar10_cnn")(images, option("model", "cifar10_cnn", weight_decay=weight_decay),
                                           num_classes=10, training=training)
    return graph, logits


def test_cifar10_cnn_has_exactly_the_tutorials_parameters():
    graph, logits = _build_cnn(training=False)
    with graph.as_default():
        variables = {v.op.name: v.shape.as_list() for v in v1.trainable_variables()}
        total = sum(int(np.prod(shape)) for shape in variables.values())
    assert total == 1_068_298
    assert variables["local3/weights"] == [2304, 384] and variables["softmax_linear/weights"] == [192, 10]
    assert logits.shape.as_list() == [None, 10]


@pytest.mark.parametrize("depth_radius,bias,alpha,beta", [(4, 1.0, 0.001 / 9.0, 0.75), (2, 2.0, 1e-2, 0.5)])
def test_lrn_and_its_gradient_equal_tensorflows(depth_radius, bias, alpha, beta):
    from runner.models.lrn import lrn

    rng = np.random.default_rng(0)
    x, dy = (rng.normal(0, 3, [4, 5, 5, 16]).astype(np.float32) for _ in range(2))
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.constant(x)
        ours, theirs = lrn(inputs, depth_radius, bias, alpha, beta), tf.nn.lrn(inputs, depth_radius, bias, alpha, beta)
        grads = [tf.gradients(y, inputs, grad_ys=tf.constant(dy))[0] for y in (ours, theirs)]
        in_bf16 = lrn(tf.cast(inputs, tf.bfloat16), depth_radius, bias, alpha, beta)
        with v1.Session() as sess:
            y, y_ref, dx, dx_ref = sess.run([ours, theirs, *grads])
    assert ours.shape.as_list() == [4, 5, 5, 16] and in_bf16.dtype == tf.bfloat16
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)


def test_weight_decay_only_on_local3_local4_and_only_when_training():
    graph, _ = _build_cnn(training=True)
    decay = graph.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
    assert sorted(t.op.name for t in decay) == ["local3/weight_loss", "local4/weight_loss"]
    with graph.as_default(), v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        weights = {v.op.name: v for v in v1.trainable_variables()}
        w3, w4, d = sess.run([weights["local3/weights"], weights["local4/weights"], tf.add_n(decay)])
        assert d == pytest.approx(0.004 * ((w3 ** 2).sum() + (w4 ** 2).sum()) / 2, rel=1e-4)
    eval_graph, _ = _build_cnn(training=False)
    assert eval_graph.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES) == []


def test_exponential_decay_schedule_is_the_tutorials():
    from runner.optim import SCHEDULES

    step = tf.Variable(0, dtype=tf.int64)
    steps_per_epoch = 50000 / 128
    decay = option("schedule", "exponential_decay")  # conf/schedule/exponential_decay.yaml: the tutorial's values
    lr = lambda: float(SCHEDULES.get("exponential_decay")(decay, 0.1, step, steps_per_epoch)())  # noqa: E731
    assert lr() == pytest.approx(0.1)
    step.assign(int(350 * steps_per_epoch) - 1)
    assert lr() == pytest.approx(0.1)
    step.assign(int(350 * steps_per_epoch))
    assert lr() == pytest.approx(0.01)


# ---------------------------------------------------------------------------------------------- pipelines
@pytest.mark.parametrize("name", PIPELINES.names())
def test_every_pipeline_gives_24x24_standardized_batches_and_exact_eval(tiny_shapes, name):
    graph = tf.Graph()
    with graph.as_default():
        pipeline = PIPELINES.get(name)(option("pipeline", name), tiny_shapes, seed=1)
        train = pipeline.build("train", 32, training=True)
        test = pipeline.build("test", 64, training=False)
    with session(graph, None, [train, test]) as (sess, _):
        images = sess.run(train.pull(), train.feed() if train.feed else None)[0]
        assert images.shape == (32, 24, 24, 3)
        np.testing.assert_allclose(images.mean((1, 2, 3)), 0, atol=1e-3)
        labels = [sess.run(test.labels, test.feed() if test.feed else None) for _ in range(3)]
    assert [len(x) for x in labels] == [64, 64, 2]
    np.testing.assert_array_equal(np.concatenate(labels), tiny_shapes.arrays("test")[1])


@pytest.mark.parametrize("name,damage", [("queue", "delete"), ("tf_data", "delete"), ("tf_data", "truncate")])
def test_a_file_damaged_under_a_running_pipeline_ends_the_run_with_that_error(tmp_path, name, damage):
    dataset = Shapes(option("dataset", "shapes", data_dir=str(tmp_path), num_train=500, num_test=100))
    dataset.prepare()
    graph = tf.Graph()
    with graph.as_default():
        batch = PIPELINES.get(name)(option("pipeline", name), dataset, seed=1).build("train", 16, training=True)
    path = dataset.records("train").files[2]
    if damage == "delete":  # after the dataset was checked
        os.remove(path)
    else:
        with open(path, "r+b") as f:
            f.truncate(RECORD_BYTES * 10 + 5)
    start = time.time()
    said = "it was deleted or moved" if damage == "delete" else "307,300 bytes at the start, 30,735 now"
    with pytest.raises(RunnerError, match=rf"data_batch_3\.bin changed while the run was reading it \({said}\)"):
        with session(graph, None, [batch]) as (sess, _):
            for _ in range(200):
                sess.run(batch.images)
    assert time.time() - start < 30
    runners = [t for t in threading.enumerate() if "(_run)" in t.name or "(_close_on_stop)" in t.name]
    assert not runners  # the reader threads were stopped and joined
