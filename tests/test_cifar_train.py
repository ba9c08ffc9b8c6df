"""Smoke and slow tiers for the CIFAR-10 tutorial on the embedded shapes dataset."""
import json

import pytest

from runner.cli.app import run
from runner.pipelines import PIPELINES
from tests.helpers import compose, option

SHAPES = ["dataset=shapes", "dataset.num_train=500", "dataset.num_test=130", "batch_size=32"]


@pytest.mark.parametrize("pipeline", PIPELINES.names())
def test_every_pipeline_trains_the_cifar10_model(tmp_path, pipeline):
    summary = run(compose(*SHAPES, f"pipeline={pipeline}", "max_steps=12", "log_every=6", "pipeline.num_threads=4"
                          if pipeline == "queue" else "seed=0"), str(tmp_path))
    assert summary["trainable_parameters"] == 1_068_298 and summary["steps"] == 12
    assert list(summary["final_precision"]) == ["test"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["num_examples"] for m in lines if "split" in m] == [130]


@pytest.mark.slow
def test_the_tutorial_beats_chance_clearly_on_shapes(tmp_path):
    """A few hundred steps of the tutorial's settings on the embedded dataset (about two minutes here)."""
    summary = run(compose("dataset=shapes", "dataset.num_train=10000", "dataset.num_test=2000", "max_steps=400",
                          "pipeline=tf_data", "log_every=100"), str(tmp_path))
    assert summary["final_precision"]["test"] > 0.5, summary["final_precision"]  # chance is 0.1



def test_a_tf_data_session_closes_at_once():
    """tf.data's autotuning model (on: AUTOTUNE is tf.data's) can make a session's close wait for its background
    thread, whose sleep grows with the run (20 s after a 60-step CIFAR-10 run, up to a minute): the close holds the
    run up CLOSE_WAIT_SECS at most."""
    import time

    import tensorflow as tf

    from runner.core.closing import CLOSE_WAIT_SECS
    from runner.engine.session import session
    from runner.run.data import build_dataset

    dataset = build_dataset(compose(*SHAPES))
    dataset.prepare()
    graph = tf.Graph()
    with graph.as_default():
        batch = PIPELINES.get("tf_data")(option("pipeline", "tf_data"), dataset, seed=0).build("test", 32, False)
    context = session(graph, None, [batch])
    sess, _ = context.__enter__()
    started = time.time()
    while time.time() - started < 6:  # long enough for the model thread's sleep to grow to seconds
        sess.run(batch.pull())
    closing = time.time()
    context.__exit__(None, None, None)
    assert time.time() - closing < CLOSE_WAIT_SECS + 0.5


def test_step_one_loss_is_cross_entropy_plus_the_initial_weight_decay(tmp_path):
    """The tutorial's first lines read loss = 4.68: ln(10) of ten near-equal logits plus 0.004 x l2_loss of the
    local3 (2304x384) and local4 (384x192) weights drawn from a normal of stddev 0.04 truncated at two stddevs
    (variance 0.7737 x 0.04^2)."""
    import math

    from tests.helpers import events, scalars

    run(compose(*SHAPES, "pipeline=tf_data", "max_steps=1", "log_every=1", "summary_every=1"), str(tmp_path))
    events = events(tmp_path)
    raw = {t: scalars(events, f"loss/{t} (raw)")[1]
           for t in ("cross_entropy", "local3/weight_loss", "local4/weight_loss", "total")}
    variance = 0.7737 * 0.04 ** 2
    assert raw["cross_entropy"] == pytest.approx(math.log(10), abs=0.05)
    assert raw["local3/weight_loss"] == pytest.approx(0.004 * 2304 * 384 * variance / 2, rel=0.01)
    assert raw["local4/weight_loss"] == pytest.approx(0.004 * 384 * 192 * variance / 2, rel=0.02)
    assert raw["total"] == pytest.approx(4.68, abs=0.05)
    step_one = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert step_one["step"] == 1 and step_one["loss"] == pytest.approx(raw["total"], rel=1e-5)


def test_the_queue_holds_the_tutorials_min_after_dequeue_and_capacity(monkeypatch):
    """cifar10_input: min_after_dequeue = 0.4 x 50,000 = 20,000 and capacity = min_after_dequeue + 3 x batch."""
    import tensorflow as tf

    from runner.run.data import build_dataset

    dataset = build_dataset(compose(*SHAPES))
    dataset.prepare()
    monkeypatch.setattr(dataset, "num_examples", lambda split: 50_000)  # CIFAR-10's training split
    with tf.Graph().as_default() as graph:
        PIPELINES.get("queue")(option("pipeline", "queue"), dataset, seed=0).build("train", 128, training=True)
    (queue,) = [op for op in graph.get_operations() if op.type == "RandomShuffleQueueV2"]
    assert (queue.get_attr("min_after_dequeue"), queue.get_attr("capacity")) == (20_000, 20_000 + 3 * 128)
    assert option("pipeline", "queue").num_threads == 16


def test_the_cifar_presets_take_the_tutorials_queue_input_and_explicit_choices_win():
    assert compose("dataset=shapes").pipeline.name == "queue"
    assert compose("dataset=cifar10").pipeline.name == "queue"
    assert compose("dataset=shapes", "pipeline=tf_data").pipeline.name == "tf_data"
    assert compose("experiment=cifar10_tutorial").pipeline.name == "queue"
    assert compose("dataset=digits").pipeline.name == "feed_dict"
    assert (compose("dataset=shapes").log_style, compose("dataset=digits").log_style) == ("cifar10", "mnist")
