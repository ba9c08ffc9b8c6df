"""The training loop's decisions at each eval: early stopping on a planted plateau, the best checkpoint kept apart
from the last N and evaluated, and their bad settings."""
from __future__ import annotations

import json
import logging

import pytest
from omegaconf import OmegaConf

from runner.cli.app import run
from runner.core.errors import ConfigError, RunnerError, TrainingError
from runner.run.validate import validate
from tests.helpers import TINY, compose, run_cli, sweep_dirs

# A plateau: a learning rate so small that no eval improves on the first (ties do not count as improvements)
PLATEAU = [*TINY, "optimizer.lr=1e-9", "checkpoint_every=10", "log_every=10", "eval_splits=[validation,test]"]


def _evals(run_dir, split: str) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line["precision"] for line in lines if line.get("split") == split}


def test_a_plateau_stops_early_with_its_checkpoint_and_says_why(tmp_path, tiny_digits, caplog):
    args = [*PLATEAU, "max_steps=200", "early_stopping.metric=precision_validation", "early_stopping.patience=2",
            "early_stopping.min_delta=0.01"]
    with caplog.at_level(logging.INFO, logger="runner"):
        summary = run(compose(*args), str(tmp_path))
    assert summary["stopped_early"] is True and summary["steps"] == 30  # evals at 10, 20, 30: two without a gain
    assert summary["early_stopping"] == {"step": 30, "metric": "precision_validation",
                                         "best": _evals(tmp_path, "validation")[10], "best_step": 10, "patience": 2}
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stopping early")]
    assert said == ["Stopping early at step 30: precision_validation has not improved by more than 0.01 in 2 "
                    f"eval(s) (best {summary['early_stopping']['best']:.4f} at step 10)"]
    assert (tmp_path / "checkpoints" / "model.ckpt-30.index").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="runner"):
        again = run(compose(*args), str(tmp_path))  # the same command again: it stays stopped
    assert again["steps"] == 30 and again["stopped_early"] is True
    assert any(r.getMessage().startswith("This run stopped early at step 30") for r in caplog.records)


def test_without_a_plateau_the_run_reaches_max_steps(tmp_path, tiny_digits):
    summary = run(compose(*TINY, "max_steps=40", "checkpoint_every=10", "early_stopping.metric=precision_test",
                          "early_stopping.patience=3"), str(tmp_path))
    assert summary["steps"] == 40 and summary["stopped_early"] is False and summary["early_stopping"] is None


def test_the_best_checkpoint_outlives_keep_checkpoints_and_is_evaluated(tmp_path, tiny_digits):
    run_dir = tmp_path / "run"
    args = [*PLATEAU, "max_steps=50", "keep_checkpoints=1", "checkpoint.keep_best=precision_validation"]
    summary = run(compose(*args), str(run_dir))
    best = {"metric": "precision_validation", "value": _evals(run_dir, "validation")[10], "step": 10,
            "checkpoint": "model.ckpt-10"}
    assert summary["best_checkpoint"] == best
    assert json.loads((run_dir / "checkpoints" / "best" / "best.json").read_text()) == best
    assert (run_dir / "checkpoints" / "best" / "model.ckpt-10.index").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == ["model.ckpt-50.index"]
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(compose(*args), run_dir / ".hydra" / "config.yaml")  # as Hydra saves it
    overrides = ["mode=eval", "checkpoint=best", "eval_splits=[validation]", f"run_dir={run_dir}"]
    out = run(compose(*overrides), str(run_dir), overrides)
    assert out["step"] == 10 and out["which"] == "best" and out["checkpoint"].endswith("best/model.ckpt-10")
    assert out["results"]["validation"]["precision"] == best["value"]  # the same weights, the same examples
    latest = run(compose("mode=eval", "eval_splits=[validation]"), str(run_dir), ["mode=eval"])
    assert latest["step"] == 50 and latest["which"] == "latest"
    resumed = run(compose(*args, "max_steps=60"), str(run_dir))  # a resume continues from the latest
    assert resumed["steps"] == 60 and resumed["steps_this_run"] == 10


def test_eval_of_the_best_checkpoint_of_a_run_that_kept_none_says_how(tmp_path, tiny_digits):
    run_dir = tmp_path / "run"
    run(compose(*TINY, "max_steps=10", "checkpoint_every=10"), str(run_dir))
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(compose(*TINY, "max_steps=10"), run_dir / ".hydra" / "config.yaml")
    with pytest.raises(RunnerError, match=r"kept no best checkpoint .*: train it with checkpoint.keep_best=METRIC"):
        run(compose("mode=eval", "checkpoint=best"), str(run_dir), ["mode=eval", "checkpoint=best"])


@pytest.mark.parametrize("override,message", [
    ("early_stopping.metric=precision_dev", r"early_stopping.metric=precision_dev is not a metric this run's evals "
                                            r"give; choose one of: precision_train, precision_validation, "
                                            r"precision_test \(precision_SPLIT of eval_splits="),
    ("early_stopping.patience=-1", r"early_stopping.patience=-1 is out of range; allowed: \[0, "),
    ("early_stopping.mode=up", r"early_stopping.mode='up' is not allowed; choose one of: max, min"),
    ("checkpoint.keep_best=precision_train", r"checkpoint.keep_best=precision_train is not a metric this run's evals "
                                             r"give; choose one of: precision_test"),
])
def test_bad_early_stopping_and_keep_best_settings_name_the_key(override, message):
    splits = ["eval_splits=[test]"] if "keep_best" in override else []
    with pytest.raises(ConfigError, match=message):
        validate(compose(override, *splits))


def test_a_bad_setting_is_one_line_and_exit_2_as_typed(tmp_path):
    proc = run_cli("early_stopping.metric=loss", cwd=tmp_path)
    assert proc.returncode == 2 and not list(tmp_path.iterdir())
    assert proc.stdout.startswith("error: early_stopping.metric=loss is not a metric this run's evals give")


@pytest.mark.slow  # a sweep of two
def test_a_sweep_report_shows_the_jobs_that_stopped_early(tmp_path):
    proc = run_cli("-m", *TINY, "optimizer.lr=1e-9,0.1", "max_steps=100", "checkpoint_every=10",
                   "early_stopping.metric=precision_validation", "early_stopping.patience=2",
                   "early_stopping.min_delta=0.01", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    report = (sweep / "report.md").read_text()
    assert "2 jobs, 2 completed" in report and "| stopped_early_at |" in report, report
    jobs = {job["job"]: job for job in json.loads((sweep / "report.json").read_text())["jobs"]}
    assert jobs["0"]["stopped_early_at"] == jobs["0"]["steps"] == 30  # lr 1e-9: the plateau
    assert "stopped_early_at" not in jobs["1"] and jobs["1"]["steps"] == 100


# A planted divergence: the learning rate x1e9 for one step (piecewise_constant), after the checkpoint of step 20
SPIKE = [*TINY, "optimizer.lr=0.1", "schedule=piecewise_constant", "schedule.boundaries=[30,31]",
         "schedule.multipliers=[1,1e9,1]", "max_steps=60", "checkpoint_every=20", "log_every=10",
         "eval_splits=[test]", "recovery.loss_upper_bound=50"]


def test_a_planted_divergence_is_recovered_from_the_last_checkpoint(tmp_path, tiny_digits, caplog):
    with caplog.at_level(logging.INFO, logger="runner"):
        summary = run(compose(*SPIKE, "recovery.max_trials=2"), str(tmp_path))
    said = [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("the weights of the checkpoint of step 20 restored; training goes on "
                                               f"from step {said[0].split(' at step ')[1].split(':')[0]} with the "
                                               "next batches (recovery 1 of 2)"), said
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (entry,) = [line for line in lines if "recovery" in line]
    assert entry["recovery"] == 1 and entry["restored_step"] == 20 and 31 <= entry["step"] <= 34  # the spike's
    losses = [line["loss"] for line in lines if "loss" in line and line["step"] > entry["step"]]
    assert losses and all(loss < 2.3 for loss in losses)  # learning again, below chance (ln 10)
    assert summary["steps"] == 60 and summary["final_precision"]["test"] > 0.3


def test_a_divergence_that_keeps_coming_back_stops_after_max_trials(tmp_path, tiny_digits):
    with pytest.raises(TrainingError, match=r"at step \d+ after 2 recoveries \(recovery.max_trials\); nothing was "
                                            r"saved from this step on \(the checkpoints in .* are kept\)"):
        run(compose(*SPIKE, "schedule.boundaries=[30]", "schedule.multipliers=[1,1e9]", "recovery.max_trials=2"),
            str(tmp_path))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["recovery"] for line in lines if "recovery" in line] == [1, 2]
    assert (tmp_path / "checkpoints" / "model.ckpt-20.index").exists()


@pytest.mark.parametrize("override,message", [
    ("schedule.boundaries=[30,20]", r"schedule.boundaries=\[30, 20\]: give increasing global steps"),
    ("schedule.multipliers=[1,0.1]", r"schedule.multipliers=\[1.0, 0.1\]: give 3 multipliers above 0"),
    ("recovery.max_trials=-1", r"recovery.max_trials=-1 is out of range"),
])
def test_bad_schedule_and_recovery_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose("schedule=piecewise_constant", override))


@pytest.mark.slow  # 4 trials
def test_a_trial_that_stops_early_is_complete_not_pruned(tmp_path):
    from tests.test_search import SEARCH, study_of

    proc = run_cli(*SEARCH, "hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
                   "optimizer.lr=choice(1e-9,0.1)", *TINY, "max_steps=100", "checkpoint_every=10",
                   "early_stopping.metric=precision_validation", "early_stopping.patience=2",
                   "early_stopping.min_delta=0.01", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    trials = study_of(sweep).trials
    stopped = [t for t in trials if json.loads((sweep / str(t.number) / "summary.json").read_text())["stopped_early"]]
    assert stopped and all(t.state.name == "COMPLETE" for t in trials), [(t.number, t.state.name) for t in trials]
    assert not list(sweep.glob("*/pruned.txt"))


# ---------------------------------------------------------------------------------------------- deterministic=true
def _losses(run_dir) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


def _twice(tmp_path, *args: str) -> tuple:
    """The same command run twice (side by side), each in its own process: TensorFlow's op determinism is a
    process's setting."""
    import subprocess
    import sys

    from tests.helpers import user_env

    procs = [subprocess.Popen([sys.executable, "-m", "runner", *args, f"run_dir={tmp_path / name}"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env())
             for name in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    return tuple(json.loads((tmp_path / name / "summary.json").read_text()) for name in ("a", "b"))


EQUAL = [*TINY, "deterministic=true", "max_steps=60", "log_every=1", "checkpoint_every=30", "eval_splits=[test]"]


@pytest.mark.slow  # the grid below runs tf_data on two towers too; test_packages runs a Keras model's twice (slow)
def test_two_deterministic_runs_on_towers_are_equal_bit_for_bit(tmp_path):
    a, b = _twice(tmp_path, *EQUAL, "pipeline=tf_data", "hardware=cpu2", "pipeline.num_parallel_calls=-1")
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b") and len(_losses(tmp_path / "a")) == 60
    assert a["final_precision"] == b["final_precision"] and a["devices"] == ["/cpu:0", "/cpu:1"]


@pytest.mark.slow  # two runs per pipeline and trainer
@pytest.mark.parametrize("pipeline", ["feed_dict", "tf_data", "preloaded"])
@pytest.mark.parametrize("hardware", ["cpu", "cpu2"])
def test_deterministic_runs_are_equal_for_each_pipeline_and_trainer(tmp_path, pipeline, hardware):
    a, b = _twice(tmp_path, *EQUAL, f"pipeline={pipeline}", f"hardware={hardware}")
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert a["final_precision"] == b["final_precision"]


@pytest.mark.slow  # the CIFAR-10 CNN's distortions in tf.data's parallel map, on two towers
def test_deterministic_runs_of_the_cnn_with_distortions_are_equal(tmp_path):
    a, b = _twice(tmp_path, "deterministic=true", "dataset=shapes", "model=cifar10_cnn", "pipeline=tf_data",
                  "hardware=cpu2", "batch_size=16", "dataset.num_train=500", "dataset.num_test=100", "max_steps=40",
                  "log_every=1", "checkpoint_every=40", "eval_splits=[test]")
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b") and a["final_precision"] == b["final_precision"]


@pytest.mark.parametrize("overrides,message", [
    (["pipeline=queue"], r"deterministic=true with pipeline=queue: shuffle_batch takes each batch from what its "
                         r"threads have queued by then"),
    (["pipeline=tf_data", "pipeline.deterministic=false"], r"deterministic=true with pipeline.deterministic=false"),
    (["pipeline=tf_data", "pipeline.service=local"], r"deterministic=true with pipeline.service=local"),
])
def test_deterministic_refuses_an_input_whose_order_timing_decides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose("deterministic=true", *overrides))


@pytest.mark.slow  # the README's four commands, and deterministic=true's, one after another
def test_the_readmes_training_loop_commands_as_typed(tmp_path):
    import shlex

    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Early stopping, the best checkpoint")[1].split("\n### ")[0]
    typed = [shlex.split(line.split(" #", 1)[0])[3:] for line in section.splitlines()
             if line.startswith("python -m runner ")]
    assert len(typed) == 4
    short = [*TINY, "max_steps=40", "checkpoint_every=10"]  # only what makes it short
    for args in typed:
        if "mode=eval" in args:
            (kept,) = [p for p in tmp_path.glob("outputs/*/*") if (p / "checkpoints" / "best").is_dir()]
            args = [f"run_dir={kept}" if a.startswith("run_dir=") else a for a in args]
            proc = run_cli(*args, cwd=tmp_path)
            assert proc.returncode == 0, proc.stdout[-2000:]
            assert json.loads((kept / "eval.json").read_text())["which"] == "best"
            continue
        proc = run_cli(*args, *short, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-2000:]
    deterministic = readme.split("### Runs that are equal bit for bit")[1].split("`")[1]
    assert deterministic == "python -m runner deterministic=true"
    proc = run_cli(*shlex.split(deterministic)[3:], *short, cwd=tmp_path)
    assert proc.returncode == 0 and "op determinism is on" in proc.stdout, proc.stdout[-2000:]
