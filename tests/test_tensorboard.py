"""TensorBoard: what each kind of event file holds (read with TensorBoard's own reader), traces, the viewer that
`make tensorboard` starts, and the HParams summaries of a sweep."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from runner.cli.app import run
from runner.sweeps.hparams import SUFFIX
from tests.helpers import ROOT, compose, events, noise, option, run_cli, scalars

pytest.importorskip("tensorboard", reason="the tensorboard extra (make install includes it)")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SHAPES = ["dataset=shapes", "dataset.num_train=500", "dataset.num_test=130", "batch_size=32"]


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory) -> Path:
    """The CIFAR-10 tutorial's preset on tiny shapes (its queue pipeline), summaries every 6 steps, steps 3-4
    traced, checkpoints (each evaluated) at 6 and 12."""
    run_dir = tmp_path_factory.mktemp("cifar_run")
    proc = run_cli(*SHAPES, "max_steps=12", "log_every=4", "summary_every=6", "checkpoint_every=6", "profile=[3,4]",
                   "pipeline.num_threads=4", "progress=lines", f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_training_events_hold_the_tutorials_scalars_histograms_and_images(cifar_run):
    import tensorflow as tf

    accumulator = events(cifar_run)
    tags = accumulator.Tags()
    terms = ["cross_entropy", "local3/weight_loss", "local4/weight_loss", "total"]
    expected = {"learning_rate", "examples_per_sec", "conv1/sparsity", "local4/sparsity",
                *(f"loss/{t}" for t in terms), *(f"loss/{t} (raw)" for t in terms)}
    assert expected <= set(tags["scalars"]), expected - set(tags["scalars"])
    raw = {t: scalars(accumulator, f"loss/{t} (raw)") for t in terms}
    for step in (6, 12):  # each term is what it says: the total is the sum of the terms
        assert raw["total"][step] == pytest.approx(sum(raw[t][step] for t in terms[:-1]), rel=1e-5)
    assert sorted(raw["total"]) == [1, 6, 12]  # the first step's too, as TensorFlow's SummarySaverHook
    with tf.Graph().as_default():  # every trainable variable and its gradient, as cifar10.train
        from runner.models import MODELS

        MODELS.get("cifar10_cnn")(tf.zeros([1, 24, 24, 3]), option("model", "cifar10_cnn"), num_classes=10,
                                  training=False)
        variables = [v.op.name for v in tf.compat.v1.trainable_variables()]
    assert len(variables) == 10
    histograms = set(tags["histograms"])
    assert {*variables, *(f"{v}/gradients" for v in variables), "conv1/activations"} <= histograms
    assert [e.step for e in accumulator.Histograms("local3/weights/gradients")] == [1, 6, 12]
    assert {"images/image/0", "images/image/2"} <= set(tags["images"])
    image = accumulator.Images("images/image/0")[0]
    assert (image.width, image.height) == (24, 24)


def test_histograms_are_tensorflows_histogram_summary_buckets_counted_faster():
    """runner counts histograms by arithmetic on the exponent; TensorBoard must see what TensorFlow's own
    HistogramSummary op would write: the same statistics and buckets (a value on a bucket's edge may round to
    its neighbour), non-finite values left out, and an empty histogram as that op writes it."""
    import numpy as np
    import tensorflow as tf

    from runner.ops.summaries import LIMITS, TrainingSummaries, histogram

    v1 = tf.compat.v1
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=20000) * 10.0 ** rng.integers(-14, 22, size=20000), np.zeros(100),
                           [np.nan, np.inf, -np.inf], rng.normal(size=100) * 1e-13]).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        histogram("values", tf.constant(data))
        histogram("none finite", tf.constant([np.nan, np.inf], tf.float32))
        summaries = TrainingSummaries.of(graph)
        reference = [tf.raw_ops.HistogramSummary(tag="values", values=data[np.isfinite(data)]),
                     tf.raw_ops.HistogramSummary(tag="none finite", values=tf.zeros([0]))]
    with v1.Session(graph=graph) as sess:
        ours, theirs = sess.run([summaries.fetches, reference])
    ours = summaries.summary(ours).value
    theirs = [v1.Summary.FromString(s).value[0] for s in theirs]
    assert [v.tag for v in ours] == [v.tag for v in theirs] == ["values", "none finite"]
    assert ours[1].histo == theirs[1].histo
    a, b = ours[0].histo, theirs[0].histo
    assert (a.num, a.min, a.max) == (b.num, b.min, b.max) == (20200, data[np.isfinite(data)].min(),
                                                              data[np.isfinite(data)].max())
    assert (a.sum, a.sum_squares) == (pytest.approx(b.sum, rel=1e-9), pytest.approx(b.sum_squares, rel=1e-9))

    def dense(h):
        counts = np.zeros(len(LIMITS))
        counts[np.searchsorted(LIMITS, h.bucket_limit)] = h.bucket
        return counts

    assert np.abs(dense(a) - dense(b)).sum() / 2 <= 2  # values moved to a neighbouring bucket, of 20,200
    assert len(a.bucket) > 100


def test_evaluations_write_their_own_events_at_the_checkpoints_steps(cifar_run):
    summary = json.loads((cifar_run / "summary.json").read_text())
    evals = events(cifar_run / "eval")
    assert evals.Tags()["scalars"] == ["precision/test"]
    precision = scalars(evals, "precision/test")
    assert sorted(precision) == [6, 12]
    assert precision[12] == pytest.approx(summary["final_precision"]["test"])
    assert "precision/test" not in events(cifar_run).Tags()["scalars"]  # eval is a run of its own


def test_one_shot_eval_adds_its_precision_at_the_checkpoints_step(cifar_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(cifar_run, run_dir)
    out = run(compose("mode=eval", f"run_dir={run_dir}"), str(run_dir))
    eval_files = sorted((run_dir / "eval").iterdir(), key=lambda p: p.stat().st_mtime)
    newest = _events_file(eval_files[-1])
    assert newest == {12: pytest.approx(out["results"]["test"]["precision"])}


def _events_file(path: Path) -> dict[int, float]:
    import tensorflow as tf

    return {e.step: v.simple_value for e in tf.compat.v1.train.summary_iterator(str(path))
            for v in e.summary.value if v.tag == "precision/test"}


def test_traced_steps_give_a_profile_and_a_chrome_trace_with_the_steps_ops(cifar_run):
    profiles = list((cifar_run / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(profiles) == 1 and profiles[0].stat().st_size > 0
    trace = json.loads((cifar_run / "traces" / "steps_3-4.trace.json").read_text())
    ops = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    # the forward and backward convolutions (oneDNN's kernels where it runs them), the LRN's and the step's update
    for op in ("Conv2D", "Conv2DBackpropFilter", "Rsqrt", "ResourceApplyGradientDescent"):
        assert any(name == op or name.endswith(op) for name in ops), (op, sorted(ops))
    assert {"train 3", "train 4"} <= ops  # each traced step is marked


def test_the_cifar10_presets_print_the_tutorials_progress_line(cifar_run):
    lines = [line for line in (cifar_run / "runner.log").read_text().splitlines() if " step " in line]
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: step (\d+), loss = \d+\.\d\d \(\d+\.\d examples/sec; " \
              r"\d+\.\d{3} sec/batch\)"
    assert [int(re.fullmatch(pattern, line).group(1)) for line in lines] == [4, 8, 12], lines


def test_queue_fill_message_is_said_once(cifar_run):
    assert (cifar_run / "runner.log").read_text().count("Filling queue with 200 CIFAR images") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_make_tensorboard_serves_the_run_and_its_tags(cifar_run):
    """`make tensorboard RUN=DIR PORT=P` (install taken as done: this test runs in the installed environment)."""
    port = _free_port()
    proc = subprocess.Popen(["make", "-s", "-o", "install", "tensorboard", f"RUN={cifar_run}", f"PORT={port}",
                             f"PY={sys.executable}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline, runs = time.time() + 60, None
        while time.time() < deadline and runs is None:
            try:
                runs = _get(f"http://127.0.0.1:{port}/data/runs")
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        name = cifar_run.resolve().name  # the training run is named after its folder, not "."
        assert sorted(runs) == [name, f"{name}/eval"]
        scalars = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert "loss/total" in scalars[name] and list(scalars[f"{name}/eval"]) == ["precision/test"]
        histograms = _get(f"http://127.0.0.1:{port}/data/plugin/histograms/tags")
        assert "conv1/weights/gradients" in histograms[name]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert not noise(proc.stdout.read())  # TensorFlow's start-up lines are not shown


def test_the_viewer_takes_the_newest_run_or_sweep_and_says_when_there_is_none(tmp_path):
    from runner.viewer import newest

    assert newest(tmp_path) is None
    proc = subprocess.run([sys.executable, "-m", "runner.viewer"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "no run with TensorBoard events under outputs/" in proc.stderr
    old, sweep = tmp_path / "outputs" / "2026-01-02" / "10-00-00", tmp_path / "multirun" / "abc"
    for directory, age in ((old, 100), (sweep / "0" / "eval", 10)):
        directory.mkdir(parents=True)
        event_file = directory / "events.out.tfevents.1.host"
        event_file.write_bytes(b"")
        os.utime(event_file, (time.time() - age, time.time() - age))
    (tmp_path / "outputs" / "2026-01-03" / "09-00-00").mkdir(parents=True)  # a run that wrote no events yet
    assert newest(tmp_path) == sweep
    os.utime(old / "events.out.tfevents.1.host")
    assert newest(tmp_path) == old


def _fake_sweep(sweep_dir: Path, jobs: list[tuple[list[str], dict | None]]) -> None:
    """Job dirs as a sweep leaves them: overrides, and summary.json for the finished ones."""
    for i, (overrides, summary) in enumerate(jobs):
        job = sweep_dir / str(i)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if summary is not None:
            (job / "summary.json").write_text(json.dumps(summary))
        else:
            (job / "error.txt").write_text("DataError: boom\n")


def _plugin_data(accumulator: EventAccumulator, tag: str):
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(accumulator.SummaryMetadata(tag).plugin_data.content)
    return data


def test_a_sweeps_report_writes_hparams_with_each_jobs_overrides_and_final_numbers(tmp_path):
    from runner.sweeps import report

    def summary(precision: float, eps: float) -> dict:
        return {"steps": 40, "examples_per_sec": eps, "wall_time_sec": 3.0, "final_precision": {"test": precision}}

    _fake_sweep(tmp_path, [(["batch_size=64", "pipeline=queue"], summary(0.5, 900.0)),
                           (["batch_size=128", "pipeline=tf_data"], summary(0.75, 1200.0)),
                           (["batch_size=256", "pipeline=queue"], None)])
    report.write(tmp_path)
    report.write(tmp_path)  # a rewrite replaces the HParams files
    assert len(list((tmp_path / "1").glob(f"*{SUFFIX}"))) == 1 and len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1
    experiment = _plugin_data(events(tmp_path), "_hparams_/experiment").experiment
    domains = {h.name: [v.number_value or v.string_value for v in h.domain_discrete.values]
               for h in experiment.hparam_infos}
    assert domains == {"batch_size": [64, 128, 256], "pipeline": ["queue", "tf_data"]}
    assert {m.name.tag for m in experiment.metric_infos} == {
        "final/precision_test", "final/examples_per_sec", "final/steps", "final/train_time_sec"}
    job = events(tmp_path / "1")
    start = _plugin_data(job, "_hparams_/session_start_info").session_start_info
    assert (start.hparams["batch_size"].number_value, start.hparams["pipeline"].string_value) == (128, "tf_data")
    assert scalars(job, "final/precision_test") == {40: 0.75}
    assert scalars(job, "final/examples_per_sec") == {40: 1200.0}
    failed = events(tmp_path / "2")
    assert _plugin_data(failed, "_hparams_/session_start_info").session_start_info.hparams["batch_size"] \
        .number_value == 256
    assert not failed.Tags()["scalars"]  # a failed job has hparams and no final numbers


def test_writers_of_the_same_second_keep_their_own_event_files(tmp_path):
    """TensorFlow names an event file by the second and the host: a training run and `mode=eval` starting together
    in RUN/eval/ shared one file, and one replaced the other's events (found by the continuous-eval test)."""
    import tensorflow as tf

    from runner.ops.summaries import file_writer, write_scalars

    with tf.Graph().as_default():
        writers = [file_writer(tmp_path), file_writer(tmp_path)]
        for step, writer in enumerate(writers, 1):
            write_scalars(writer, step, **{"precision/test": step / 10})
            writer.close()
    found = sorted(list(_events_file(f).items()) for f in tmp_path.iterdir())
    assert found == [[(1, pytest.approx(0.1))], [(2, pytest.approx(0.2))]]
