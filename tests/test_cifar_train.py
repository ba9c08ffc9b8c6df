"""Smoke and slow tiers for the CIFAR-10 tutorial on the embedded shapes dataset."""
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from runner.build import run
from runner.pipelines import PIPELINES
from tests.conftest import ROOT, compose, run_cli

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


def _lines(proc) -> "queue.Queue[str]":
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _wait_for(lines, text: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"{text!r} not printed; got: {''.join(seen)}")


def test_continuous_eval_follows_new_checkpoints_until_stopped(tmp_path):
    args = [*SHAPES, "log_every=5", "checkpoint_every=5", f"run_dir={tmp_path}"]
    assert run_cli(*args, "max_steps=5").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "runner", "mode=eval", "eval_once=false", "eval_interval_secs=0.5",
                             f"run_dir={tmp_path}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = _wait_for_and_continue = _lines(proc)
        _wait_for(lines, "model.ckpt-5 (step 5, moving averages)")
        _wait_for(lines, "precision @ 1 = ")
        assert run_cli(*args, "max_steps=10").returncode == 0  # a new checkpoint appears
        _wait_for(_wait_for_and_continue, "model.ckpt-10 (step 10, moving averages)")
        proc.send_signal(signal.SIGINT)
        _wait_for(lines, "stopped: SIGINT: evaluation of")
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        proc.kill()
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 10


@pytest.mark.slow
def test_the_tutorial_beats_chance_clearly_on_shapes(tmp_path):
    """A few hundred steps of the tutorial's settings on the embedded dataset (about two minutes here)."""
    summary = run(compose("dataset=shapes", "dataset.num_train=10000", "dataset.num_test=2000", "max_steps=400",
                          "pipeline=tf_data", "log_every=100"), str(tmp_path))
    assert summary["final_precision"]["test"] > 0.5, summary["final_precision"]  # chance is 0.1
