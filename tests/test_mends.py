"""Reliability mends found by a fault and bad-input probe: each case refused or read as a careful user expects, in one
line naming what was wrong and what to do."""
from __future__ import annotations

import glob
import gzip
import json
import os
import re
import resource
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from runner.cli.app import run
from runner.core.errors import DataError, TrainingError
from runner.engine.hooks import Clock, DivergenceHook
from runner.run.data import build_dataset
from tests.helpers import TINY, compose, project_copy, pull, run_cli, user_env
from tests.test_own_data import overrides_for


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    overrides = overrides_for("image_folder", tmp_path, 40, 20)
    (tmp_path / "files" / "train" / "zebra").mkdir()
    dataset = build_dataset(compose(*overrides))
    with pytest.raises(DataError, match=r"files/train/zebra holds no images \(.jpeg, .jpg, .png\); add its images or "
                                        r"remove the folder"):
        dataset.prepare()


@pytest.mark.parametrize("header", [True, False])
def test_a_csv_with_a_byte_order_mark_reads_as_without_one(tmp_path, header):
    """Files saved by spreadsheet programs start with a UTF-8 BOM: it is not part of the first column's name, nor of
    its first value, in every pipeline."""
    extra = [] if header else ["dataset.header=false", "dataset.label_column=2", "++dataset.column_defaults.1=0.0"]
    plain, marked = ([o for o in overrides_for("csv", tmp_path / name, 30, 20)
                      if header or not o.startswith("++dataset.column_defaults")] for name in ("plain", "marked"))
    for path in (tmp_path / "marked" / "files").glob("*.csv"):
        lines = path.read_text().splitlines()
        path.write_bytes("\ufeff".encode() + "\n".join(lines if header else lines[1:]).encode() + b"\n")
    if not header:
        for path in (tmp_path / "plain" / "files").glob("*.csv"):
            path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    expected = build_dataset(compose(*plain, *extra))
    expected.prepare()
    dataset = build_dataset(compose(*marked, *extra))
    dataset.prepare()
    for split in ("train", "test"):
        np.testing.assert_array_equal(dataset.arrays(split)[0], expected.arrays(split)[0])
    for pipeline in ("tf_data", "queue"):  # these decode the file's lines with TensorFlow's CSV op
        _, batches = pull(dataset, pipeline, "test", 20, training=False, steps=1)
        _, wanted = pull(expected, pipeline, "test", 20, training=False, steps=1)
        np.testing.assert_array_equal(batches[0][0], wanted[0][0])


def test_a_run_dir_name_longer_than_the_file_system_allows_is_one_line(tmp_path):
    proc = run_cli(f"run_dir=runs/{'x' * 300}", "max_steps=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "is 300 bytes, longer than the 255 this file system allows; choose a shorter run_dir" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr and not any(tmp_path.iterdir())


def test_the_nan_message_says_no_checkpoint_was_written_when_none_was(tmp_path, tiny_digits):
    with pytest.raises(TrainingError, match=r"loss is (nan|inf) at step \d+; nothing was saved from this step on "
                                            r"\(no checkpoint was written before it\)"):
        run(compose(*TINY, "optimizer.lr=1e30", "max_steps=100"), str(tmp_path))
    checkpoints = tmp_path / "kept" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "model.ckpt-10.index").write_bytes(b"")
    hook = DivergenceHook(None, Clock(step=11), checkpoints)
    with pytest.raises(TrainingError, match=r"\(the checkpoints in .*/kept/checkpoints are kept\)"):
        hook.after_run(None, SimpleNamespace(results=float("nan")))


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "cut":  # the last 100 bytes gone: the last record ends early
        path.write_bytes(bytes(data[:-100]))
    elif how == "flip":  # one byte of a record's data changed: its CRC no longer matches
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:  # a gzipped file read with dataset.compression=none
        path.write_bytes(gzip.compress(bytes(data)))


@pytest.mark.parametrize("how", ["cut", "flip", "gzip"])
def test_a_damaged_tfrecord_file_is_named_with_its_record(tmp_path, how):
    overrides = overrides_for("tfrecord_raw", tmp_path, 40, 20)
    _damage(tmp_path / "files" / "train.tfrecords", how)
    dataset = build_dataset(compose(*overrides))
    with pytest.raises(DataError, match=r"files/train.tfrecords: record \d+: cannot be read \(.*(truncated|corrupted) "
                                        r"record.*\); the file is damaged \(write or copy it again\) or compressed"):
        dataset.prepare()


@pytest.mark.slow  # three runs; a damaged file read in-process is in make test
def test_a_damaged_tfrecord_file_exits_2_in_one_line_in_train_and_eval(tmp_path):
    overrides = overrides_for("tfrecord_raw", tmp_path, 40, 20)
    trained = run_cli(*overrides, "batch_size=10", "max_steps=2", "eval_splits=[test]", "run_dir=run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    _damage(tmp_path / "files" / "test.tfrecords", "flip")
    for args in (["max_steps=4"], ["mode=eval"]):  # a rerun that resumes, and the evaluation of the run
        proc = run_cli(*overrides, "batch_size=10", "eval_splits=[test]", "run_dir=run", *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "Traceback" not in proc.stdout + proc.stderr
        assert re.search(r"error: .*files/test.tfrecords: record \d+: cannot be read", proc.stdout + proc.stderr)


@pytest.mark.slow  # a task loading TensorFlow to fail on its port
@pytest.mark.parametrize("role", ["ps", "worker"])
def test_a_cluster_task_whose_port_is_in_use_says_so_in_one_line(tmp_path, role):
    with socket.socket() as taken, socket.socket() as other:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other.bind(("127.0.0.1", 0))
        ports = {"ps": other.getsockname()[1], "worker": other.getsockname()[1]}
        ports[role] = taken.getsockname()[1]
        cluster = {job: [f"127.0.0.1:{port}"] for job, port in ports.items()}
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": 0}})}
        proc = run_cli("hardware=cluster", *TINY, "batch_size=10", "max_steps=1", "run_dir=run", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (f"error: {role} 0 cannot listen on 127.0.0.1:{ports[role]}: the port is in use by another process"
            in proc.stdout + proc.stderr)


@pytest.mark.parametrize("override,message", [
    ("dataset.image_size=[0,32]", "dataset.image_size=[0, 32]: dataset.image_size[0]=0 is out of range; allowed: [1, "),
    ("dataset.image_size=[32]", "dataset.image_size=[32] must hold 2 values"),
    ("dataset.channels=2", "dataset.channels=2 is not allowed; choose one of: 1, 3, 4"),
])
def test_image_sizes_and_channels_are_checked_before_anything_runs(tmp_path, override, message):
    proc = run_cli("dataset=image_folder", f"dataset.root={tmp_path / 'nowhere'}", override, cwd=tmp_path)
    assert proc.returncode == 2 and f"error: {message}" in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir())  # no run dir


@pytest.mark.parametrize("text,message", [
    ("batch_size: [1\n", r"experiments/zz_mend_\w+.yaml: line 3: expected ',' or '\]', but got '<stream end>'; the "
                         r"file is not valid YAML"),
    ("pipeline:\n  nmu_threads: 3\n", r"experiments/zz_mend_\w+.yaml: line 3: pipeline.nmu_threads is not a known key; "
                                      r"the keys here are: prefetch"),
    ("batch_sise: 10\n", r"experiments/zz_mend_\w+.yaml: line 2: batch_sise is not a known key; the keys here are: "
                         r"mode, batch_size"),
    ("tune:\n  rouds: 3\n", r"experiments/zz_mend_\w+.yaml: line 3: tune.rouds is not a known key; the keys here are: "
                            r"pipelines, budget_secs"),  # a section of the config is named as a group is
])
def test_a_broken_experiment_is_one_line_naming_the_file_the_line_and_the_key(tmp_path, text, message):
    project = project_copy(tmp_path / "project")
    name = "zz_mend_broken"
    (project / "experiments" / f"{name}.yaml").write_text("# @package _global_\n" + text)
    proc = run_cli(f"experiment={name}", "max_steps=1", cwd=project)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert re.search("error: .*" + message, proc.stderr), proc.stderr


def test_a_dataset_root_that_is_not_there_is_said_at_once_leaving_nothing(tmp_path):
    proc = run_cli("dataset=image_folder", "dataset.root=/nonexistent/folder", "dataset.image_size=[32,32]",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: dataset.root=/nonexistent/folder: not found; point it at the folder of the dataset's files" \
        in proc.stdout
    assert not any(tmp_path.iterdir())  # no run dir, no runner.log


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")), reason="this machine has a GPU device")
def test_strict_gpus_on_a_machine_without_any_are_refused_before_tensorflow_loads(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "hardware=gpu8", "hardware.strict=true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "error: hardware=gpu8 asks for 8 GPU(s) but this machine has 0 (no /dev/nvidia* device)" in proc.stdout
    assert "tensorflow" not in {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}


@pytest.mark.slow  # three runs
def test_eval_of_an_own_data_run_reads_its_data_from_a_new_root(tmp_path):
    """Data moved to another folder: mode=eval names the run's dataset and its new root; a bare dataset.root says
    how to."""
    overrides = overrides_for("image_folder", tmp_path, 60, 30)
    common = ["batch_size=10", "eval_splits=[test]", "run_dir=run"]
    trained = run_cli(*overrides, *common, "max_steps=3", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    (tmp_path / "files").rename(tmp_path / "moved")
    bare = run_cli("mode=eval", "run_dir=run", f"dataset.root={tmp_path / 'moved'}", cwd=tmp_path)
    assert bare.returncode == 2
    assert "name the run's dataset too, e.g. mode=eval dataset=NAME dataset.root=..." in bare.stderr
    proc = run_cli("mode=eval", "run_dir=run", "dataset=image_folder", f"dataset.root={tmp_path / 'moved'}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Num examples: 30" in proc.stdout


@pytest.mark.slow  # a loop-mounted full disk
def test_a_full_disk_while_writing_a_cache_is_one_line_and_leaves_nothing_partial(tmp_path):
    overrides = overrides_for("image_folder", tmp_path, 300, 100)

    def limit():  # files may not grow past 200 KB: the decoded training images (700 KB) can't be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run([sys.executable, "-m", "runner", *overrides, "batch_size=10", "max_steps=2",
                           "eval_splits=[test]", "run_dir=run"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit, env=user_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"error: cannot write the decoded cache \(dataset.cache_dir\) in .*/cache/.*: no space left on "
                     r"the device, or a file size limit reached; free some space", proc.stdout)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix in (".npy", ".part")]
    assert run(compose(*overrides, "batch_size=10", "max_steps=2", "eval_splits=[test]"), str(tmp_path / "again"))


def test_a_data_file_that_changes_under_a_graph_is_named(tmp_path):
    import tensorflow as tf

    from runner.core.errors import DataChanged
    from runner.pipelines.base import check_unchanged, watch

    files = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for f in files:
        f.write_bytes(b"\0" * 3073)
    graph, other = tf.Graph(), tf.Graph()
    with graph.as_default():
        watch(files)
    check_unchanged(graph)
    files[1].write_bytes(b"\0" * 3073)  # the same size, rewritten
    check_unchanged(other)  # another graph reads nothing
    with pytest.raises(DataChanged, match=r"b.bin changed while the run was reading it \(rewritten"):
        check_unchanged(graph)
    with graph.as_default():
        watch(files)  # a file is stamped once, when the graph that reads it is built
    with pytest.raises(DataChanged, match="b.bin changed"):
        check_unchanged(graph)
    files[1].unlink()
    with pytest.raises(DataChanged, match="it was deleted or moved"):
        check_unchanged(graph)


def _fixed_length_files(root):
    """CIFAR-10's layout under the fixed_length dataset's default file names."""
    from runner.datasets.fixed_length import Layout

    rng = np.random.default_rng(0)
    root.mkdir()
    for name, n in (("data_batch_1.bin", 2000), ("test_batch.bin", 300)):
        Layout((32, 32, 3)).write(root / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                                  rng.integers(0, 10, n))


@pytest.mark.slow  # a run whose file is cut short under it, per pipeline
@pytest.mark.parametrize("pipeline", ["queue", "tf_data", "feed_dict", "preloaded"])
def test_a_file_truncated_under_a_running_pipeline_stops_it_naming_the_file(tmp_path, pipeline):
    """As the probe typed it: the run stops within seconds, exit 2, one line naming the file; the checkpoint written
    before the change is kept."""
    import time

    _fixed_length_files(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "dataset=fixed_length", f"dataset.root={tmp_path}/data",
                             f"pipeline={pipeline}", "max_steps=1000000", "checkpoint_every=200",
                             "keep_checkpoints=1000"], cwd=work,  # none rotated away: preloaded trains on, from memory
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env())
    try:
        said = []
        for line in proc.stdout:
            said.append(line)
            if line.startswith("Step 400:"):  # after the first checkpoint
                break
        assert said and said[-1].startswith("Step 400:"), "".join(said)
        truncated = time.monotonic()
        os.truncate(tmp_path / "data" / "data_batch_1.bin", 700000)
        rest = proc.communicate(timeout=60)[0]
        stopped = time.monotonic() - truncated
    finally:
        proc.kill()
    lines = [line for line in rest.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and lines, rest
    assert re.fullmatch(rf"error: {tmp_path}/data/data_batch_1.bin changed while the run was reading it "
                        r"\(6,146,000 bytes at the start, 700,000 now\), so the run stopped\. Put the file back .*",
                        lines[0]), lines
    assert stopped < 10, stopped  # seconds, where the pipeline would have trained on
    assert "Traceback" not in rest
    assert glob.glob(str(work / "outputs/*/*/checkpoints/model.ckpt-200.index"))
