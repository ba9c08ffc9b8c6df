"""Every registered pipeline keeps the same epoch contract (see runner/pipelines/base.py)."""
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from runner.pipelines import PIPELINES
from tests.helpers import TINY, option, pull, run_cli

ALL = PIPELINES.names()


def _keys(images: np.ndarray, labels: np.ndarray) -> list[tuple[bytes, int]]:
    """One hashable key per example: its pixels (back to uint8) and its label."""
    pixels = np.rint(np.asarray(images, np.float64) * 255).astype(np.uint8)
    return [(p.tobytes(), int(y)) for p, y in zip(pixels, labels)]


VARIANTS = [(name, {}) for name in ALL] + [("queue", {"records_per_read": 1}), ("feed_dict", {"prefetch": False}),
                                           ("preloaded", {"prefetch": False}), ("preloaded", {"storage": "constant"}),
                                           ("tf_data", {"cache": "memory"}), ("tf_data", {"cache": "disk"}),
                                           ("tf_data", {"deterministic": False, "private_threadpool_size": 2,
                                                        "max_intra_op_parallelism": 0})]


@pytest.mark.parametrize("name,params", VARIANTS)
def test_eval_pass_visits_every_example_exactly_once(tiny_digits, name, params):
    expected = sorted(_keys(tiny_digits.preprocess_np(tiny_digits.arrays("test")[0], False, None),
                            tiny_digits.arrays("test")[1]))
    batch, batches = pull(tiny_digits, name, "test", 64, training=False, steps=10, **params)  # two passes of 5
    assert batch.num_examples == 300
    assert [len(labels) for _, labels in batches] == [64, 64, 64, 64, 44] * 2
    for first in (0, 5):
        seen = [k for images, labels in batches[first:first + 5] for k in _keys(images, labels)]
        assert sorted(seen) == expected
    assert batches[0][0].shape[1:] == tiny_digits.output_shape and batches[0][0].dtype == np.float32


@pytest.mark.parametrize("name,params", [v for v in VARIANTS if v[0] != "queue"])
def test_training_epochs_are_fresh_permutations(tiny_digits, name, params):
    n = tiny_digits.num_examples("train")
    expected = sorted(_keys(tiny_digits.preprocess_np(tiny_digits.arrays("train")[0], True, None),
                            tiny_digits.arrays("train")[1]))
    _, batches = pull(tiny_digits, name, "train", 50, training=True, steps=2 * n // 50, **params)
    seen = [k for images, labels in batches for k in _keys(images, labels)]
    if params.get("deterministic", True):
        assert sorted(seen[:n]) == expected and sorted(seen[n:]) == expected
    else:  # batches taken as they are ready: a few may cross the epoch boundary, none is lost or doubled
        assert set(seen) == set(expected) and max(Counter(seen).values()) <= 3 and len(set(seen[:n])) >= n - 4 * 50
    assert seen[:n] != seen[n:]  # reshuffled every epoch
    assert seen[:n] != sorted(seen[:n])


def test_batches_crossing_an_epoch_boundary_keep_epochs_exact(tiny_digits):
    # 1000 examples in batches of 300: the fourth batch takes 100 from epoch 1 and 200 from epoch 2.
    for name in ("feed_dict", "preloaded"):
        _, batches = pull(tiny_digits, name, "train", 300, training=True, steps=7)
        seen = [k for images, labels in batches for k in _keys(images, labels)]
        assert len(set(seen[:1000])) == 1000 and len(set(seen[1000:2000])) == 1000


@pytest.mark.parametrize("records_per_read", [1, 16])
def test_queue_training_mixes_epochs_but_covers_the_split(tiny_digits, records_per_read):
    # shuffle_batch mixes epochs, so coverage is statistical: over 4 epochs' worth of batches each example is
    # drawn 4 times on average; missing one entirely (or drawing it 12 times) would take a broken queue.
    n = tiny_digits.num_examples("train")
    _, batches = pull(tiny_digits, "queue", "train", 50, training=True, steps=4 * n // 50,
                       records_per_read=records_per_read)
    counts = Counter(k for images, labels in batches for k in _keys(images, labels))
    assert len(counts) == n, f"{n - len(counts)} examples never drawn"
    assert max(counts.values()) <= 12


def test_preloaded_as_a_constant_is_in_the_graph_def_and_refused_past_its_limit(tiny_digits, monkeypatch):
    from runner.core.errors import ConfigError
    from runner.pipelines import preloaded

    graph = tf.Graph()
    with graph.as_default():
        PIPELINES.get("preloaded")(option("pipeline", "preloaded", storage="constant"), tiny_digits, seed=0
                                   ).build("train", 10, True)
    assert graph.as_graph_def().ByteSize() > 784_000  # the pixels are in the graph
    monkeypatch.setattr(preloaded, "GRAPH_DEF_LIMIT", 100_000)
    with tf.Graph().as_default(), pytest.raises(ConfigError, match=r"holds at most 2 GB.*pipeline.storage=variable"):
        PIPELINES.get("preloaded")(option("pipeline", "preloaded", storage="constant"), tiny_digits, seed=0
                                   ).build("train", 10, True)


def test_preloaded_data_stays_out_of_the_graph_def(tiny_digits):
    graph = tf.Graph()
    with graph.as_default():
        PIPELINES.get("preloaded")(option("pipeline", "preloaded"), tiny_digits, seed=0).build("train", 10, True)
    assert graph.as_graph_def().ByteSize() < 100_000  # the 784 KB of pixels are fed, not embedded
    saved = graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    assert not [v.name for v in saved if "preloaded" in v.name]  # data is not written into checkpoints


def test_preloaded_refuses_a_split_larger_than_the_memory_available(tiny_digits, monkeypatch):
    from runner.core.errors import ConfigError
    from runner.pipelines import preloaded

    size = sum(a.nbytes for a in tiny_digits.arrays("train"))
    assert preloaded.available_memory() > 2 * size  # the machine's own figure lets it load
    monkeypatch.setattr(preloaded, "available_memory", lambda: 2 * size - 1)
    with tf.Graph().as_default(), pytest.raises(ConfigError, match=r"pipeline=preloaded holds the train split in "
                                                                   r"memory: 0\.00 GB.*Use pipeline=tf_data"):
        PIPELINES.get("preloaded")(option("pipeline", "preloaded"), tiny_digits, seed=0).build("train", 32, True)


@pytest.mark.parametrize("params", [{"cache": "memory"}, {"cache": "disk"},
                                    {"private_threadpool_size": 2, "max_intra_op_parallelism": 0}])
def test_tf_data_knobs_that_change_only_speed_give_todays_batches(tiny_digits, params):
    """With deterministic=true (the default), a cache or a thread pool gives the batches that decoding at every
    step gives, in training and in eval (parallel reads, which change the order, in tests/test_own_data.py)."""
    for training in (False, True):
        _, plain = pull(tiny_digits, "tf_data", "train", 50, training=training, steps=30)
        _, other = pull(tiny_digits, "tf_data", "train", 50, training=training, steps=30, **params)
        for (x, y), (ox, oy) in zip(plain, other):
            np.testing.assert_array_equal(oy, y)
            np.testing.assert_allclose(ox, x)


def test_a_cache_that_does_not_fit_in_memory_is_refused(tiny_digits, monkeypatch):
    import runner.pipelines.tf_data
    from runner.core.errors import ConfigError

    monkeypatch.setattr(runner.pipelines.tf_data, "available_memory", lambda: 1000)
    with pytest.raises(ConfigError, match=r"pipeline.cache=memory holds the decoded train split in memory: 0.00 GB, "
                                          r"and 0.00 GB are available; use pipeline.cache=disk or "
                                          r"pipeline.cache=none"):
        pull(tiny_digits, "tf_data", "train", 50, training=True, steps=1, cache="memory")


@pytest.mark.parametrize("autotune,algorithm", [({}, "DEFAULT"),
                                                ({"algorithm": "hill_climb", "cpu_budget": 2, "ram_budget": 2**30},
                                                 "HILL_CLIMB")])
@pytest.mark.filterwarnings("ignore:To make it possible to preserve tf.data options")  # read back in graph mode
def test_tf_data_runs_tf_datas_autotuner_with_the_configured_options(tiny_digits, autotune, algorithm):
    """AUTOTUNE (-1, the default) is tf.data's autotuner, on: the options of the dataset the pipeline builds, read
    back; with its algorithm and budgets as configured."""
    pipeline = PIPELINES.get("tf_data")(option("pipeline", "tf_data", autotune=autotune), tiny_digits, seed=0)
    assert pipeline.num_parallel_calls == tf.data.AUTOTUNE and pipeline.prefetch == tf.data.AUTOTUNE
    with tf.Graph().as_default():
        ds, _ = pipeline._batches("train", 50, True)
        options = ds.options().autotune
    assert options.enabled is True
    assert options.autotune_algorithm == getattr(tf.data.experimental.AutotuneAlgorithm, algorithm)
    assert options.cpu_budget == autotune.get("cpu_budget", 0) and options.ram_budget == autotune.get("ram_budget", 0)


def test_cache_disk_as_typed_loads_the_saved_splits(tmp_path, tiny_digits):
    """``python -m runner pipeline=tf_data pipeline.cache=disk`` in an empty folder, after a run that saved the
    splits (made here through the pipeline, as any run makes them): it loads them as they are, trains and
    evaluates."""
    for split in ("train", "validation", "test"):
        pull(tiny_digits, "tf_data", split, 100, training=split == "train", steps=1, cache="disk")
    saves = {p: p.stat().st_mtime_ns for p in tiny_digits.cache_dir.glob("tf_data/*/**/*") if p.is_file()}
    assert sorted({p.relative_to(tiny_digits.cache_dir).parts[1].split("-")[0] for p in saves}) == [
        "test", "train", "validation"]
    proc = run_cli("pipeline=tf_data", "pipeline.cache=disk", "pipeline.num_parallel_reads=4",
                   "pipeline.deterministic=false", *TINY, "max_steps=10", "eval_splits=[validation,test]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stderr + proc.stdout
    assert "Decoding" not in said and "Rebuilding" not in said and said.count("Precision @ 1") == 2
    assert {p: p.stat().st_mtime_ns for p in saves} == saves
