"""Failures and recovery: moved run dirs, empty and damaged caches, changed configs on resume, disk errors, locks.

Each test names the point of the reliability contract it pins (README, "Failures and recovery")."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from runner.cli.app import run
from runner.core import files as cache_files
from runner.core.errors import ConfigError, DataError
from runner.core.signals import Interrupted, StopSignals
from runner.datasets.base import Records
from runner.engine.checkpoints import latest_checkpoint
from runner.engine.evals import EvalOp, run_eval
from runner.pipelines.base import Batch, record_files
from runner.run import rundir
from runner.run.data import build_dataset
from tests.helpers import ROOT, TINY, compose, run_cli

QUICK = [*TINY, "max_steps=40", "log_every=20", "checkpoint_every=20", "eval_splits=[test]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root) -> Path:
    """A finished 40-step run, trained from the command line (so its saved config is Hydra's)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_cli(*QUICK, f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir


def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, symlinks=True)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------------------------------------- 1. moved run dirs
def test_checkpoint_state_holds_relative_paths(trained):
    state = (trained / "checkpoints" / "checkpoint").read_text()
    assert 'model_checkpoint_path: "model.ckpt-40"' in state and str(trained) not in state


def test_a_moved_run_dir_evaluates_and_resumes_from_its_own_checkpoints(trained, tmp_path):
    moved = _copy(trained, tmp_path / "elsewhere" / "run")
    evaluated = run(compose("mode=eval"), str(moved))
    assert evaluated["checkpoint"] == f"{moved}/checkpoints/model.ckpt-40" and evaluated["step"] == 40
    resumed = run(compose(*QUICK, "max_steps=60"), str(moved))
    assert resumed["steps"] == 60 and resumed["steps_this_run"] == 20
    assert not (trained / "checkpoints" / "model.ckpt-60.index").exists()  # the original is untouched


def test_a_state_file_with_absolute_paths_of_another_place_is_read_by_name(trained, tmp_path):
    copy = _copy(trained, tmp_path / "copy")
    (copy / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "/gone/run/checkpoints/model.ckpt-40"\n'
        'all_model_checkpoint_paths: "/gone/run/checkpoints/model.ckpt-20"\n'
        'all_model_checkpoint_paths: "/gone/run/checkpoints/model.ckpt-40"\n')
    assert latest_checkpoint(copy) == str(copy / "checkpoints" / "model.ckpt-40")
    (copy / "checkpoints" / "checkpoint").unlink()  # no state file at all: the newest complete one
    assert latest_checkpoint(copy) == str(copy / "checkpoints" / "model.ckpt-40")


# ---------------------------------------------------------------------------------------------- 2. empty files
class _Files:
    """A dataset stand-in whose split is given record files."""

    location = "the test's folder"

    def __init__(self, paths):
        self.paths = tuple(str(p) for p in paths)

    def records(self, split):
        return Records("fixed_length", self.paths, record_bytes=3073)

    def source_files(self, split):
        return list(self.paths)


def test_a_split_whose_files_hold_no_records_is_an_error_naming_them(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"")
    (tmp_path / "b.bin").write_bytes(b"\0" * 100)  # less than one 3,073-byte record
    with pytest.raises(DataError, match=r"the train split has no records: .*a\.bin, .*b\.bin hold none"):
        record_files(_Files([tmp_path / "a.bin", tmp_path / "b.bin"]), "train")
    (tmp_path / "c.bin").write_bytes(b"\0" * 3073)
    assert record_files(_Files([tmp_path / "a.bin", tmp_path / "c.bin"]), "train").files[1].endswith("c.bin")


def test_an_emptied_tfrecord_cache_file_is_rebuilt_before_use(tmp_path, tiny_digits):
    for pipeline in ("queue", "tf_data"):
        paths = tiny_digits.tfrecords()
        paths["train"].write_bytes(b"")
        summary = run(compose(*QUICK, f"pipeline={pipeline}", "max_steps=20"), str(tmp_path / pipeline))
        assert summary["steps"] == 20
        assert sum(1 for _ in tf.data.TFRecordDataset(str(paths["train"]))) == 1000


BLOCKED = textwrap.dedent("""
    import sys, tensorflow as tf
    from runner.engine.session import session
    from runner.core.signals import Interrupted, StopSignals
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():  # a reader over a file with no whole record: the batch never comes
        files = v1.train.string_input_producer([sys.argv[1]])
        _, record = v1.FixedLengthRecordReader(record_bytes=3073).read(files)
        batch = v1.train.batch([record], batch_size=4)
    with StopSignals() as stop:
        try:
            with session(graph, None, [], stop=stop) as (sess, _):
                print("running", flush=True)
                sess.run(batch)
        except Interrupted:
            print(f"released by signal {stop.signum}", flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_signal_releases_a_step_blocked_on_input(tmp_path, sig):
    (tmp_path / "short.bin").write_bytes(b"\0" * 100)
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, str(tmp_path / "short.bin")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(1.0)
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert f"released by signal {int(sig)}" in proc.stdout.read()
    finally:
        proc.kill()


# ---------------------------------------------------------------------------------------------- 3. stale caches
def test_a_killed_regeneration_is_never_used_as_it_is(tmp_path, data_root):
    cfg = compose(*TINY, f"dataset.data_dir={tmp_path}")
    dataset = build_dataset(cfg)
    dataset.prepare()
    manifest = dataset.manifest.path
    assert json.loads(manifest.read_text())["spec"] == dataset.spec
    # What a kill -9 in the middle of a regeneration leaves: its first file is rewritten (atomically, here with
    # other images), the others are the old ones, and the manifest was removed before the rewrite began.
    manifest.unlink()
    images = np.zeros((2000, 28, 28), np.uint8)
    from runner.datasets.idx_format import write_idx

    write_idx(dataset.files()["train_images"], images)
    again = build_dataset(cfg)
    again.prepare()  # regenerates: the files match the config again
    assert again.num_examples("train") == 1000 and again.num_examples("validation") == 200
    np.testing.assert_array_equal(again.arrays("train")[0], dataset.arrays("train")[0])


def test_a_changed_or_truncated_cache_file_is_made_again(tmp_path, data_root):
    cfg = compose(*TINY, f"dataset.data_dir={tmp_path}")
    build_dataset(cfg).prepare()
    labels = build_dataset(cfg).files()["test_labels"]
    labels.write_bytes(labels.read_bytes()[:-10])  # truncated; the manifest still says the old size
    dataset = build_dataset(cfg)
    assert dataset.missing()  # seen as incomplete
    dataset.prepare()
    assert dataset.num_examples("test") == 300


def test_cache_files_are_shareable(tmp_path, data_root):
    dataset = build_dataset(compose(*TINY, f"dataset.data_dir={tmp_path}"))
    dataset.prepare()
    umask = os.umask(0)
    os.umask(umask)
    for path in [*dataset.paths(), dataset.manifest.path, *dataset.tfrecords().values()]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_a_complete_cache_is_read_without_its_lock(tmp_path, data_root, monkeypatch):
    """A read-only copy of a complete cache is usable: nothing needs the lock file, which can't be created."""
    dataset = build_dataset(compose(*TINY, f"dataset.data_dir={tmp_path}"))
    dataset.prepare()
    dataset.tfrecords()

    def refuse(folder):
        raise AssertionError(f"took the lock of {folder}")

    for module in ("runner.datasets.base", "runner.datasets.records"):
        monkeypatch.setattr(f"{module}.folder_lock", refuse)
    again = build_dataset(compose(*TINY, f"dataset.data_dir={tmp_path}"))
    assert again.num_examples("train") == 1000
    assert again.tfrecords()["train"].exists()


def test_other_sizes_are_generated_beside_and_never_over_the_files_a_run_reads(tmp_path, data_root):
    one = build_dataset(compose(*TINY, f"dataset.data_dir={tmp_path}"))
    one.prepare()
    before = {p: p.stat().st_mtime_ns for p in one.paths()}
    other = build_dataset(compose(*TINY, "dataset.num_train=1500", f"dataset.data_dir={tmp_path}"))
    other.prepare()
    assert other.data_dir != one.data_dir and other.data_dir.parent == one.data_dir.parent == tmp_path
    assert {p: p.stat().st_mtime_ns for p in one.paths()} == before  # untouched
    assert other.num_examples("train") == 1300 and one.num_examples("train") == 1000


def test_a_cache_folder_that_cannot_be_written_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"file/sub: cannot write the data cache there .*dataset.data_dir"):
        with cache_files.folder_lock(tmp_path / "file" / "sub"):
            pass


# ---------------------------------------------------------------------------------------------- 4. damaged records
@pytest.mark.slow  # train, convert, train
def test_a_damaged_record_names_the_file_and_convert_repairs_it(tmp_path, tiny_digits):
    paths = tiny_digits.tfrecords()
    train = paths["train"]
    stat = train.stat()
    raw = bytearray(train.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 16] = bytes(255 - b for b in raw[len(raw) // 2:len(raw) // 2 + 16])
    train.write_bytes(bytes(raw))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only the CRCs can tell
    leftover = train.parent / ".train.tfrecords.abc123.part"
    leftover.write_bytes(b"half")
    args = [*TINY, "pipeline=tf_data", "max_steps=30", "eval_splits=[test]"]
    proc = run_cli(*args, f"run_dir={tmp_path}/run")
    assert proc.returncode == 2, proc.stdout
    error = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and f"{train}: corrupted record at" in error[0], proc.stdout
    assert "Rebuild the records with: python -m runner mode=convert dataset.num_train=1200" in error[0]
    written = train.stat().st_mtime_ns
    run(compose(*TINY, "mode=convert"), str(tmp_path / "convert"))
    assert train.stat().st_mtime_ns != written and not leftover.exists()
    assert run(compose(*args), str(tmp_path / "run2"))["steps"] == 30


# ---------------------------------------------------------------------------------------------- 5. changed configs
def test_resuming_with_a_changed_config_is_refused_and_leaves_the_run_as_it_was(trained, tmp_path):
    copy = _copy(trained, tmp_path / "run")
    saved = (copy / ".hydra" / "config.yaml").read_text()
    proc = run_cli(*QUICK, "max_steps=60", "batch_size=50", f"run_dir={copy}")
    assert proc.returncode == 2
    assert "holds a run trained with another config (batch_size 100 -> 50)" in proc.stdout
    assert "force_resume=true" in proc.stdout
    assert (copy / ".hydra" / "config.yaml").read_text() == saved  # never overwritten
    assert not (copy / ".hydra" / "resumes").exists() and not (copy / "checkpoints" / "model.ckpt-60.index").exists()


@pytest.mark.parametrize("args,named", [
    (["optimizer.lr=0.5"], "optimizer.lr 0.01 -> 0.5"),
    (["pipeline=preloaded"], "pipeline.name 'feed_dict' -> 'preloaded'"),
    (["model.hidden1=256"], "model.hidden1 128 -> 256"),
    (["optimizer=adam"], "optimizer.beta1 None -> 0.9"),
    (["dataset.num_train=1300"], "dataset.num_train 1200 -> 1300"),
])
def test_what_alters_the_model_or_data_is_named_on_resume(trained, args, named):
    with pytest.raises(ConfigError, match=f"another config \\(.*{named.replace('(', '.').replace(')', '.')}"):
        rundir.check_resume(trained, compose(*QUICK, "max_steps=60", *args))


def test_safe_changes_resume_and_are_recorded(trained, tmp_path):
    copy = _copy(trained, tmp_path / "run")
    saved = (copy / ".hydra" / "config.yaml").read_text()
    proc = run_cli(*QUICK, "max_steps=60", "log_every=10", "hardware=cpu2", f"run_dir={copy}")
    assert proc.returncode == 0, proc.stdout
    assert (copy / ".hydra" / "config.yaml").read_text() == saved
    assert "max_steps: 60" in (copy / ".hydra" / "resumes" / "1" / "config.yaml").read_text()
    last = json.loads((copy / "history.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "resume" and last["changed"]["max_steps"] == [40, 60]
    assert last["changed"]["hardware.num_devices"] == [1, 2] and last["forced"] is False


@pytest.mark.slow  # (the refusal without force_resume is in the fast tier)
def test_force_resume_continues_and_a_checkpoint_that_does_not_fit_is_a_config_error(trained, tmp_path):
    copy = _copy(trained, tmp_path / "run")
    forced = run_cli(*QUICK, "max_steps=60", "optimizer.lr=0.02", "force_resume=true", f"run_dir={copy}")
    assert forced.returncode == 0, forced.stdout
    assert json.loads((copy / "history.jsonl").read_text().splitlines()[-1])["forced"] is True
    with pytest.raises(ConfigError, match="model.ckpt-60 does not fit the model this config builds"):
        run(compose(*QUICK, "max_steps=80", "optimizer=adam", "force_resume=true"), str(copy))


def test_eval_takes_its_choices_and_refuses_model_changes(trained):
    with pytest.raises(ConfigError, match="mode=eval evaluates the run with its own config; it can't take "
                                          "model.hidden1=256 .the run has 128."):
        rundir.eval_config(trained, compose("mode=eval", "model.hidden1=256"), ["mode=eval", "model.hidden1=256"])
    chosen = run_cli("mode=eval", "pipeline=tf_data", "batch_size=64", "eval_splits=[validation]",
                     f"run_dir={trained}")
    assert chosen.returncode == 0, chosen.stdout
    assert "pipeline=tf_data" in chosen.stdout and "batch_size=64" in chosen.stdout
    assert "Validation Data Eval:" in chosen.stdout and "Test Data Eval:" not in chosen.stdout


# ---------------------------------------------------------------------------------------------- 8. disk errors
def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    for run_dir in (tmp_path / "taken", tmp_path / "taken" / "run"):
        proc = run_cli(*QUICK, f"run_dir={run_dir}")
        assert proc.returncode == 2 and proc.stdout.strip().splitlines() == [
            f"error: run_dir={run_dir}{' is' if run_dir.name == 'taken' else ': ' + str(tmp_path / 'taken') + ' is'}"
            f" a file, not a folder; choose another run_dir"]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, tiny_digits):
    run_dir = tmp_path / "run"
    run(compose(*QUICK, "max_steps=20"), str(run_dir))

    def limit():  # files may not grow past 300 KB: the 420 KB checkpoint of step 40 can't be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    proc = subprocess.run([sys.executable, "-m", "runner", *QUICK, f"run_dir={run_dir}"], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, preexec_fn=limit)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert error and f"cannot write the checkpoint of step 40 in {run_dir}/checkpoints" in error[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert latest_checkpoint(run_dir) == str(run_dir / "checkpoints" / "model.ckpt-20")
    resumed = run(compose(*QUICK), str(run_dir))  # with room again, the run goes on from step 20
    assert resumed["steps"] == 40 and resumed["steps_this_run"] == 20


# ---------------------------------------------------------------------------------------------- 9. smaller things
def test_a_second_run_in_the_same_run_dir_fails_naming_the_first(trained, tmp_path):
    copy = _copy(trained, tmp_path / "run")
    with rundir.lock(copy):
        proc = run_cli(*QUICK, "max_steps=60", f"run_dir={copy}")
    assert proc.returncode == 2
    assert f"run_dir={copy} is in use by another run (pid {os.getpid()})" in proc.stdout
    assert not (copy / ".hydra" / "resumes").exists()


def test_a_second_run_never_overwrites_the_config_of_a_run_that_has_no_checkpoint_yet(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("first: run\n")
    with rundir.lock(run_dir):  # the first run is still preparing its data
        proc = run_cli(*QUICK, f"run_dir={run_dir}")
    assert proc.returncode == 2 and "is in use by another run" in proc.stdout
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "first: run\n"


def test_a_stop_signal_ends_an_eval_pass_between_batches():
    images = tf.zeros([4, 2])
    op = EvalOp("test", Batch(images, tf.zeros([4], tf.int32), 400), tf.constant(4, tf.int64),
                tf.constant(4, tf.int64), steps=100)
    stop = StopSignals()
    stop.signum = signal.SIGTERM

    class NoSession:
        def run(self, *args, **kwargs):
            raise AssertionError("a batch was evaluated after the stop")

    with pytest.raises(Interrupted):
        run_eval(NoSession(), op, stop)


@pytest.mark.slow  # a data generation stopped
def test_a_signal_during_data_generation_stops_at_once_and_leaves_no_partial_cache(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "runner", f"dataset.data_dir={tmp_path}/data",
                             f"run_dir={tmp_path}/run"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("Generating the digits dataset"):
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
        out = proc.stdout.read()
    finally:
        proc.kill()
    assert "stopped: SIGTERM while no training step ran; nothing was lost" in out and "Traceback" not in out
    assert not (tmp_path / "data" / "digits.json").exists()  # no manifest: the next run generates again
    assert not list((tmp_path / "data").glob(".*.part"))


def test_every_config_error_is_a_config_error_not_a_traceback():
    with pytest.raises(ConfigError, match="has no schema"):
        from omegaconf import OmegaConf, open_dict

        from runner.run.validate import validate

        cfg = compose()
        with open_dict(cfg):
            cfg.pipeline = OmegaConf.create({"name": "feed_dict", "prefetch": True})  # an option YAML without schema
        validate(cfg)


def test_a_saved_config_is_typed_again_so_eval_validates_it(trained):
    from omegaconf import OmegaConf

    from runner.config.hydra import typed
    from runner.run.validate import validate

    cfg = typed(rundir.saved_config(trained))
    validate(cfg)
    assert OmegaConf.get_type(cfg.pipeline).__name__ == "FeedDictConfig" and cfg.batch_size == 100
    chosen = rundir.eval_config(trained, compose("mode=eval", "batch_size=7"), ["mode=eval", "batch_size=7"])
    assert chosen.batch_size == 7 and chosen.mode == "eval"
    piped = rundir.eval_config(trained, compose("mode=eval", "pipeline=tf_data", "pipeline.prefetch=2"),
                               ["mode=eval", "pipeline=tf_data", "pipeline.prefetch=2"])  # composed by Hydra
    assert OmegaConf.get_type(piped.pipeline).__name__ == "TfDataConfig" and piped.pipeline.prefetch == 2
    assert piped.pipeline.shuffle_buffer == 10000 and piped.batch_size == 100  # the option's YAML; the run's
    with pytest.raises(ConfigError, match="does not fit this version of runner"):
        typed(OmegaConf.merge(rundir.saved_config(trained), {"model": {"depth": 3}}))
