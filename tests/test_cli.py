"""The command line, as a user runs it: subprocesses, exit codes, messages, and no TensorFlow before a run."""
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY, compose, run_cli


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
    (["batch_size=0"], "batch_size=0 is out of range; allowed: [1, 2147483647]"),
    (["pipeline=queue", "pipeline.min_fraction_of_examples_in_queue=2"],
     "pipeline.min_fraction_of_examples_in_queue=2.0 is out of range; allowed: (0.0, 1.0]"),
    (["pipeline=fax"],
     "pipeline=fax is not an option of pipeline; choose one of: feed_dict, preloaded, queue, tf_data"),
    (["batch_size=lots"], "batch_size"),
    (["pipeline.depth=3"], "pipeline.depth is not a known key; the keys here are: prefetch"),
    (["+foo=1"], "foo is not a known key; the keys here are: mode, batch_size"),
    (["+model.hidden3=5"], "model.hidden3 is not a known key; the keys here are: hidden1, hidden2"),
    (["seed=-1"], "seed=-1 is out of range; allowed: [0, 2147483647]"),
    (["hardware.intra_op_threads=99999999999"], "hardware.intra_op_threads=99999999999 is out of range"),
    (["batch_size=1e23"], "batch_size=1e+23: Value '1e+23' of type 'float' could not be converted to Integer"),
    (["model=cifar10_cnn"], "model=cifar10_cnn takes 3-channel images but dataset=digits has 1-channel images"),
    (["trainer=nope"], "trainer='nope' is not known; choose one of: auto, single, towers"),
    (["trainer=single", "hardware=cpu2"], "trainer=single runs on one device but hardware=cpu2 has 2"),
    (["mode=bench", "bench.pipelines=[nope]"], "bench.pipelines contains 'nope'; known pipelines: feed_dict"),
    (["dataset=shapes", "dataset.validation_size=100", "pipeline=tf_data"],
     "pipeline=tf_data reads whole CIFAR files, which hold no validation split"),
    (["pipeline=tf_data", "pipeline.num_parallel_calls=0"],
     "pipeline.num_parallel_calls=0 is out of range; allowed: [1, 2147483647] or -1"),
    (["profile=[5,2]"], "profile=[5, 2] is not a range of steps; give [first, last] with 1 <= first <= last"),
    (["log_style=foo"], "log_style='foo' is not allowed; choose one of: mnist, cifar10"),
    (["sweep_objective=nope.x"], "sweep_objective=nope.x is not a number a run reports; choose one of: "
                                 "final_precision.train"),
    (["dataset.data_dir="], "dataset.data_dir is empty; give it a value"),
    (["dataset=shapes", "mode=convert"],
     "mode=convert writes TFRecords that the queue and tf_data pipelines read; dataset=shapes"),
    (["model=nope"], "model=nope is not an option of model; choose one of: cifar10_cnn, mlp"),
    (["dataset.validation_size=0"], "eval_splits contains 'validation' but dataset.validation_size=0 makes none"),
    (["report.compare=[precision_tst]"], "report.compare contains 'precision_tst', which no job reports; choose "
                                         "from: precision_train, precision_validation, precision_test"),
    (["report.replicate_over=[sed]"], "report.replicate_over contains 'sed', which is not a key of the config"),
    (["mode=bench", "bench.repeats=0"], "bench.repeats=0 is out of range; allowed: [1, 1000]"),
])
def test_bad_config_fails_fast_naming_the_key(tmp_path, args, message):
    """What the command line says of each, through the functions it calls (a command per family of error below)."""
    said = _refusal(*args, f"run_dir={tmp_path}/run")
    assert message in said and "\n" not in said, said
    assert not (tmp_path / "run").exists()


def _refusal(*args: str) -> str:
    """The error line ``python -m runner ARGS`` prints, made in this process by the functions the command calls."""
    from runner.cli.messages import composition_error
    from runner.core.errors import ConfigError
    from runner.run.validate import validate

    with pytest.raises(Exception) as refused:  # noqa: PT011  Hydra's and OmegaConf's errors, or runner's own
        validate(compose(*args))
    said = str(refused.value) if isinstance(refused.value, ConfigError) else composition_error(refused.value, [*args])
    assert said is not None, refused.value
    return said


@pytest.mark.parametrize("args", [["batch_size=0"], ["pipeline=fax"], ["batch_size=lots"], ["+foo=1"],
                                  ["model=cifar10_cnn"], ["dataset.validation_size=0"]])
def test_a_bad_config_on_the_command_line_is_one_line_and_exit_2(tmp_path, args):
    proc = run_cli(*args, f"run_dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [f"error: {_refusal(*args, f'run_dir={tmp_path}/run')}"]  # one line, as tested above
    assert not (tmp_path / "run").exists()  # a rejected config leaves no run dir behind


@pytest.mark.parametrize("args,message", [
    (["run_dir="], "run_dir is empty; give it a value"),
])
def test_an_empty_run_dir_is_refused(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2 and (proc.stdout + proc.stderr).strip() == f"error: {message}"


def test_unknown_pipeline_name_lists_the_known_ones(tmp_path):
    proc = run_cli(*TINY, "pipeline.name=fax", f"run_dir={tmp_path}/run")
    assert proc.returncode == 2
    assert "pipeline.name='fax' is not known; choose one of: feed_dict, preloaded, queue, tf_data" in proc.stdout
    assert not (tmp_path / "run").exists()


def test_missing_mnist_without_download_says_what_to_do(tmp_path):
    proc = run_cli("dataset=mnist", "dataset.download=false", f"dataset.data_dir={tmp_path}/none",
                   f"run_dir={tmp_path}/run")
    assert proc.returncode == 2
    assert f"MNIST files missing in {tmp_path}/none" in proc.stdout and "dataset.download=true" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_eval_of_a_dir_without_a_run(tmp_path):
    proc = run_cli("mode=eval", f"run_dir={tmp_path}")
    assert proc.returncode == 2 and "is not a training run dir" in proc.stdout


@pytest.mark.slow  # the README's mode=eval command, as typed, is in the fast tier (tests/test_readme.py)
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


@pytest.mark.slow  # (convert in-process: tests/test_own_data.py, tests/test_records.py)
def test_convert_writes_tfrecords(tmp_path):
    proc = run_cli(*TINY, "mode=convert", f"dataset.data_dir={tmp_path}/d", f"run_dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "d").glob("*/tfrecords/validation_200/*.tfrecords")  # in the generated data's own folder
    assert sorted(p.name for p in written) == ["test.tfrecords", "train.tfrecords", "validation.tfrecords"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_verbose_shows_what_a_quiet_run_hides(tmp_path):
    from tests.helpers import AS_USER, noise

    args = ["-m", *TINY, "max_steps=5", "eval_splits=[test]", "batch_size=50"]  # a sweep: the sweep's process too
    (tmp_path / "quiet").mkdir()
    quiet = run_cli(*args, cwd=tmp_path / "quiet", unset=AS_USER, timeout=300)
    loud = run_cli(*args, "verbose=true", cwd=tmp_path, unset=AS_USER, timeout=300)
    assert quiet.returncode == 0 and loud.returncode == 0, loud.stderr[-3000:]
    assert not noise(quiet.stdout + quiet.stderr)
    assert any("oneDNN custom operations are on" in line for line in noise(loud.stdout + loud.stderr))
