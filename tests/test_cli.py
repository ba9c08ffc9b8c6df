"""The command line, as a user runs it: subprocesses, exit codes, messages, and no TensorFlow before a run."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, run_cli


def test_cfg_job_and_help_do_not_import_tensorflow():
    for args in (["--cfg", "job"], ["--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert "hydra" in imported and "tensorflow" not in imported


def test_help_lists_groups_and_keys():
    out = run_cli("--help").stdout
    assert "pipeline    feed_dict, preloaded, queue, tf_data" in out
    assert "experiment  cifar10_tutorial, mnist_fully_connected_feed" in out
    assert "model       cifar10_cnn, mlp" in out
    assert "batch_size: 100" in out


def test_cfg_job_prints_the_composed_config():
    out = run_cli("--cfg", "job", "pipeline=queue", "batch_size=64").stdout
    assert "name: queue" in out and "batch_size: 64" in out and "min_fraction_of_examples_in_queue: 0.4" in out


@pytest.mark.parametrize("args,message", [
    (["batch_size=0"], "batch_size=0 is out of range; allowed: [1, inf]"),
    (["pipeline=queue", "pipeline.min_fraction_of_examples_in_queue=2"],
     "pipeline.min_fraction_of_examples_in_queue=2.0 is out of range; allowed: (0.0, 1.0]"),
    (["pipeline=fax"], "Could not find 'pipeline/fax'"),
    (["batch_size=lots"], "batch_size"),
    (["pipeline.depth=3"], "Key 'depth' not in 'FeedDictConfig'"),
])
def test_bad_config_fails_fast_naming_the_key(tmp_path, args, message):
    proc = run_cli(*args, f"run_dir={tmp_path}/run")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists()  # a rejected config leaves no run dir behind


def test_unknown_pipeline_name_lists_the_known_ones(tmp_path):
    proc = run_cli(*TINY, "pipeline.name=fax", f"run_dir={tmp_path}")
    assert proc.returncode == 2
    assert "unknown pipeline 'fax'; known pipelines: feed_dict, preloaded, queue, tf_data" in proc.stdout


def test_missing_mnist_without_download_says_what_to_do(tmp_path):
    proc = run_cli("dataset=mnist", "dataset.download=false", f"dataset.data_dir={tmp_path}/none",
                   f"run_dir={tmp_path}/run")
    assert proc.returncode == 2
    assert f"MNIST files missing in {tmp_path}/none" in proc.stdout and "dataset.download=true" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_eval_of_a_dir_without_a_run(tmp_path):
    proc = run_cli("mode=eval", f"run_dir={tmp_path}")
    assert proc.returncode == 2 and "is not a training run dir" in proc.stdout


def test_train_then_eval_from_the_command_line(tmp_path):
    train = run_cli(*TINY, "max_steps=60", "log_every=20", "checkpoint_every=60", f"run_dir={tmp_path}")
    assert train.returncode == 0, train.stderr
    lines = train.stdout.splitlines()
    building = [line for line in lines if line.startswith("Building: ")]
    assert building == [f"Building: dataset=digits pipeline=feed_dict model=mlp(hidden1=128, hidden2=32) "
                        f"batch_size=100 devices=/cpu:0 trainer=single run_dir={tmp_path}"]
    assert any(line.startswith("Step 20: loss = ") and "examples/sec" in line for line in lines)
    assert "  Num examples: 300  Num correct: " in train.stdout
    assert "WARNING" not in train.stdout + train.stderr  # TensorFlow's chatter is silenced
    evaluated = run_cli("mode=eval", f"run_dir={tmp_path}")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"Evaluating {tmp_path}/checkpoints/model.ckpt-60 (step 60)" in evaluated.stdout
    assert (tmp_path / ".hydra" / "config.yaml").exists() and (tmp_path / ".hydra" / "eval").is_dir()
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["results"]["test"]["precision"] == json.loads(
        (tmp_path / "summary.json").read_text())["final_precision"]["test"]


def test_convert_writes_tfrecords(tmp_path):
    proc = run_cli(*TINY, "mode=convert", f"dataset.data_dir={tmp_path}/d", f"run_dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "d" / "tfrecords" / "validation_200").glob("*.tfrecords")) == \
        ["test.tfrecords", "train.tfrecords", "validation.tfrecords"]


def test_multirun_over_pipelines_and_batch_sizes(tmp_path):
    proc = run_cli("-m", *TINY, "pipeline=feed_dict,queue,tf_data,preloaded", "batch_size=50,100",
                   "max_steps=20", "log_every=10", "checkpoint_every=20", "eval_splits=[test]",
                   f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert len(summaries) == 8
    assert sorted((s["pipeline"], s["config"]["batch_size"]) for s in summaries) == sorted(
        (p, b) for p in ("feed_dict", "queue", "tf_data", "preloaded") for b in (50, 100))
    assert all(s["steps"] == 20 for s in summaries)
