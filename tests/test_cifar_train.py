"""Smoke and slow tiers for the CIFAR-10 tutorial on the embedded shapes dataset."""
import json

import pytest

from runner.build import run
from runner.pipelines import PIPELINES
from tests.conftest import compose, option

SHAPES = ["dataset=shapes", "dataset.num_train=500", "dataset.num_test=130", "batch_size=32"]


@pytest.mark.parametrize("pipeline", PIPELINES.names())
def test_every_pipeline_trains_the_cifar10_model(tmp_path, pipeline):
    summary = run(compose(*SHAPES, f"pipeline={pipeline}", "max_steps=12", "log_every=6", "pipeline.num_threads=4"
                          if pipeline == "queue" else "seed=0"), str(tmp_path))
    assert summary["trainable_parameters"] == 1_068_298 and summary["steps"] == 12
    assert list(summary["final_precision"]) == ["test"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["num_examples"] for m in lines if "split" in m] == [130]


def test_summaries_hold_the_tutorials_scalars_images_and_histograms(tmp_path):
    import tensorflow as tf

    run(compose(*SHAPES, "max_steps=6", "log_every=6"), str(tmp_path))
    tags = set()
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    expected = {"loss/raw", "loss/average", "learning_rate", "conv1/sparsity", "local3/sparsity",
                "conv1/activations", "softmax_linear/activations", "precision/test", "examples_per_sec"}
    assert expected <= tags, expected - tags
    assert any(tag.startswith("images") for tag in tags)


@pytest.mark.slow
def test_the_tutorial_beats_chance_clearly_on_shapes(tmp_path):
    """A few hundred steps of the tutorial's settings on the embedded dataset (about two minutes here)."""
    summary = run(compose("dataset=shapes", "dataset.num_train=10000", "dataset.num_test=2000", "max_steps=400",
                          "pipeline=tf_data", "log_every=100"), str(tmp_path))
    assert summary["final_precision"]["test"] > 0.5, summary["final_precision"]  # chance is 0.1



def test_a_tf_data_session_closes_at_once():
    """tf.data's autotuning model made every session close wait for its background thread, whose sleep grows with
    the run (20 s after a 60-step CIFAR-10 run, up to a minute); without it a finished run ends at once."""
    import time

    import tensorflow as tf

    from runner.build import build_dataset
    from runner.engine import session

    dataset = build_dataset(compose(*SHAPES))
    dataset.prepare()
    graph = tf.Graph()
    with graph.as_default():
        batch = PIPELINES.get("tf_data")(dataset, seed=0, **option("pipeline", "tf_data")).build("test", 32, False)
    context = session(graph, None, [batch])
    sess, _ = context.__enter__()
    started = time.time()
    while time.time() - started < 6:  # long enough for the model thread's sleep to grow to seconds
        sess.run(batch.pull())
    closing = time.time()
    context.__exit__(None, None, None)
    assert time.time() - closing < 0.5
