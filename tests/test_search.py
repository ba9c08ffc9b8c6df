"""hydra/sweeper=optuna (runner.sweeps.search), as typed in empty folders: hydra-optuna-sweeper's search-space
syntax, a study that a stopped command continues, pruning from inside the jobs (basic and joblib launchers; SLURM in
tests/test_slurm.py), several objectives and their Pareto front, and bad settings refused before anything runs."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from runner.core.errors import ConfigError
from runner.sweeps.search import JOURNAL, parse_space
from tests.helpers import ROOT, TINY, run_cli, sweep_dirs, user_env

QUICK = [*TINY, "eval_splits=[test]", "log_every=100"]
SEARCH = ["-m", "hydra/sweeper=optuna", "sweep_objective=final_precision.test", "hydra.sweeper.direction=maximize"]


def study_of(sweep_dir):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    name = json.loads((sweep_dir / "search.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=storage)


# ------------------------------------------------------------------------------------------- the syntax
@pytest.mark.parametrize("spec,expected", [
    ("interval(0.001, 0.1)", FloatDistribution(0.001, 0.1)),
    ("tag(log, interval(0.001, 0.1))", FloatDistribution(0.001, 0.1, log=True)),
    ("interval(1, 8)", FloatDistribution(1.0, 8.0)),  # Hydra's intervals are of floats unless cast
    ("int(interval(16.0, 256.0))", IntDistribution(16, 256)),
    ("tag(log, int(interval(16, 256)))", IntDistribution(16, 256, log=True)),
    ("choice(50, 100, 200)", CategoricalDistribution([50, 100, 200])),
    ("choice(adam, sgd)", CategoricalDistribution(["adam", "sgd"])),
    ("range(1, 10)", IntDistribution(1, 9)),  # as Hydra's range: the stop left out
    ("range(1, 10, 3)", IntDistribution(1, 7, step=3)),
    ("range(0.25, 1.0, 0.25)", FloatDistribution(0.25, 0.75, step=0.25)),
])
def test_each_spec_of_hydra_optuna_sweeper_reads_as_its_distribution(spec, expected):
    assert parse_space({"key": spec}, []).distributions == {"key": expected}


def test_command_line_sweeps_join_the_space_and_plain_overrides_are_shared():
    space = parse_space({"optimizer.lr": "tag(log, interval(0.001, 0.5))", "model.hidden1": "64"},
                        ["max_steps=500", "batch_size=choice(50,100)"])
    assert set(space.distributions) == {"optimizer.lr", "batch_size"}
    assert space.fixed == ("model.hidden1=64", "max_steps=500")
    assert space.overrides({"optimizer.lr": 0.01, "batch_size": 50}) == (
        "model.hidden1=64", "max_steps=500", "optimizer.lr=0.01", "batch_size=50")


def test_the_readmes_experiment_reads_as_a_search_space():
    params = yaml.safe_load((ROOT / "experiments" / "optuna_lr.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert parse_space(params, []).distributions == {
        "optimizer.lr": FloatDistribution(0.001, 0.5, log=True), "batch_size": CategoricalDistribution([50, 100, 200])}


@pytest.mark.parametrize("spec", ["interval(0.1", "glob(*)", "range(5, 1)"])
def test_a_spec_that_is_not_a_search_is_named(spec):
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params: key: .*interval\(0.001, 0.1\)"):
        parse_space({"key": spec}, [])


# ------------------------------------------------------------------------------------------- as typed
def test_the_readmes_search_runs_and_a_stopped_search_continues_to_n_trials(tmp_path):
    """SIGTERM while trial 2 trains: exit 143, trial 2 left running; the same command resumes it from its
    checkpoint: 3 trials in all, trials 0 and 1 not run again, no dir written twice."""
    args = ["-m", "experiment=optuna_lr", *TINY, "log_every=100", "max_steps=300", "hydra.sweeper.n_trials=3"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=user_env())
    out, third = [], False
    for line in proc.stdout:
        out.append(line)
        third = third or "#2 : " in line
        if third and line.startswith("Step 200:"):
            proc.send_signal(signal.SIGTERM)
            break
    out.append(proc.stdout.read())
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, "".join(out)[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    first = {n: (sweep / str(n) / "summary.json").stat().st_mtime_ns for n in (0, 1)}
    assert [t.state.name for t in study_of(sweep).trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    again = run_cli(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert sweep_dirs(tmp_path) == [sweep]
    assert re.search(r"3 trials in all: 2 finished, 1 to resume, 0 to start", again.stdout)
    assert re.search(r"Resuming from .*/2/checkpoints/model.ckpt-\d+", again.stdout)
    study = study_of(sweep)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 and [t.number for t in study.trials] == [0, 1, 2]
    assert {n: (sweep / str(n) / "summary.json").stat().st_mtime_ns for n in (0, 1)} == first
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    assert "Best: trial" in (sweep / "report.md").read_text()
    # The same command once more runs nothing and says so: the docs' searches as typed (tests/test_readme.py).


# A search whose learning rates below 1e-4 cannot learn in 300 steps (precision at chance): a median pruner told
# each 50 steps prunes them.
PRUNED_SEARCH = [*SEARCH, "optimizer.lr=tag(log,interval(0.000001,0.5))", "hydra/sweeper/sampler=random",
                 "hydra.sweeper.sampler.seed=3", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2",
                 "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_settings.n_startup_trials=2", *QUICK,
                 "max_steps=300", "checkpoint_every=50"]


def _pruned_search(tmp_path, *launcher: str) -> tuple:
    proc = run_cli(*PRUNED_SEARCH, *launcher, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    return sweep, study_of(sweep)


def check_pruned(sweep, study) -> None:
    """Every trial that cannot learn, after the two that start the median, pruned by step 100 with its checkpoint;
    the report counts them."""
    trials = study.trials
    hopeless = [t for t in trials[2:] if t.params["optimizer.lr"] < 1e-4]  # after the two that start the median
    assert hopeless, [t.params for t in trials]
    for t in hopeless:
        assert t.state.name == "PRUNED" and max(t.intermediate_values) <= 100, (t.number, t.intermediate_values)
        assert (sweep / str(t.number) / "pruned.txt").is_file()
        assert (sweep / str(t.number) / "checkpoints" / f"model.ckpt-{max(t.intermediate_values)}.index").exists()
    pruned = sum(t.state.name == "PRUNED" for t in trials)
    report = (sweep / "report.md").read_text()
    assert f"8 jobs, {8 - pruned} completed, {pruned} pruned, 0 failed" in report
    assert f"8 trials, {8 - pruned} complete, {pruned} pruned, 0 failed" in report
    assert "![search history](search_history.png)" in report and (sweep / "search_history.png").is_file()


@pytest.mark.slow  # 8 trials (make test runs the README's search, stopped and continued)
def test_trials_that_cannot_learn_are_pruned_early_and_counted(tmp_path):
    check_pruned(*_pruned_search(tmp_path))


@pytest.mark.slow  # each worker loads TensorFlow
@pytest.mark.parametrize("launcher", ["joblib", "parallel"])
def test_pruning_works_through_the_local_parallel_launchers(tmp_path, launcher):
    check_pruned(*_pruned_search(tmp_path, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2"))


@pytest.mark.slow  # 4 trials
def test_two_objectives_give_a_pareto_front_with_commands(tmp_path):
    proc = run_cli("-m", "hydra/sweeper=optuna", "sweep_objective=[precision_test,examples_per_sec]",
                   "hydra.sweeper.direction=[maximize,maximize]", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.sampler.seed=0", "batch_size=choice(10,50,200)", "optimizer.lr=interval(0.01,0.5)",
                   *QUICK, "max_steps=100", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    study = study_of(sweep)
    front = {t.number for t in study.best_trials}
    assert front and all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in study.trials)
    report = (sweep / "report.md").read_text()
    assert f"Pareto front: {len(front)} of 4 complete trials" in report
    rows = re.findall(r"^\| (\d+) \| [\d.]+ \| [\d,]+ \| `(python -m runner [^`]+)` \|$", report, re.M)
    assert {int(n) for n, _ in rows} == front
    assert all("batch_size=" in command and "optimizer.lr=" in command for _, command in rows)
    assert (sweep / "search_front.png").is_file()


@pytest.mark.slow  # three short runs
def test_the_best_trials_command_over_seeds_runs_the_repeats_as_a_grid(tmp_path):
    """The report's command for a trial with -m 'seed=range(3)' (the experiment's search left with nothing but
    repeats, its pruner set): three jobs, grouped by the report, no study."""
    proc = run_cli("-m", "experiment=optuna_lr", "hydra.sweeper.pruner=median", *TINY, "max_steps=100",
                   "optimizer.lr=0.3", "batch_size=100", "seed=range(3)", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Repeating: 3 jobs over seed (nothing else to search: no study)" in proc.stdout
    (sweep,) = sweep_dirs(tmp_path)
    report = (sweep / "report.md").read_text()
    assert "3 jobs, 3 completed" in report and "## Groups: jobs that differ only in seed" in report
    assert not (sweep / JOURNAL).exists() and "## Search" not in report


@pytest.mark.slow  # a short search with each sampler
@pytest.mark.parametrize("sampler,trials", [("random", 3), ("grid", 4), ("cmaes", 3), ("nsgaii", 3)])
def test_each_sampler_searches_with_its_seed(tmp_path, sampler, trials):
    space = (["batch_size=choice(50,100)", "optimizer.lr=choice(0.1,0.3)"] if sampler == "grid" else
             ["batch_size=int(interval(20,200))", "optimizer.lr=tag(log,interval(0.01,0.5))"])
    storage = [f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db"] if sampler == "random" else []  # an RDB
    proc = run_cli(*SEARCH, f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=1", *storage,
                   "hydra.sweeper.n_trials=10" if sampler == "grid" else f"hydra.sweeper.n_trials={trials}", *space,
                   *QUICK, "max_steps=20", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    study = optuna.load_study(study_name=sweep.name, storage=f"sqlite:///{tmp_path}/study.db") if storage else (
        study_of(sweep))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * trials  # the grid: its 4 points, not n_trials
    assert "Best: trial" in (sweep / "report.md").read_text()
    if sampler == "grid":
        assert "The grid has 4 points: 4 trials" in proc.stdout
        assert sorted((t.params["batch_size"], t.params["optimizer.lr"]) for t in study.trials) == [
            (50, 0.1), (50, 0.3), (100, 0.1), (100, 0.3)]


@pytest.mark.parametrize("args,said", [
    (["hydra.sweeper.sampler.name=sobol"],
     "hydra.sweeper.sampler.name=sobol is not a sampler; choose one of: tpe, random, grid, cmaes, nsgaii"),
    (["hydra.sweeper.pruner=early"], "hydra.sweeper.pruner=early is not a pruner; choose one of: none, median"),
    (["sweep_objective=[precision_test,examples_per_sec]"],
     "hydra.sweeper.direction=['maximize'] gives 1 direction(s) for 2 objective(s)"),
    (["sweep_objective=[precision_test,examples_per_sec]", "hydra.sweeper.direction=[maximize,maximize]",
      "hydra.sweeper.pruner=median"], "hydra.sweeper.pruner=median: Optuna prunes by one objective"),
    (["seed=range(3)"], "seed is searched beside optimizer.lr: a search runs each trial once"),
    (["hydra/sweeper/sampler=grid"], "hydra.sweeper.sampler.name=grid: optimizer.lr is a continuous interval"),
    (["sweep_objective=null"], "hydra/sweeper=optuna maximizes or minimizes what each trial returns"),
    (["optimizer.lr=0.1"], "hydra/sweeper=optuna has nothing to search"),
])
def test_a_bad_search_is_named_before_the_sweep_starts(args, said):
    """What the sweep's first check says (runner.sweeps.search.check_search, on the config Hydra composes)."""
    from runner.cli import app  # noqa: F401  runner's resolvers, as the command line registers them
    from runner.config import guard
    from runner.sweeps.search import check_search

    typed = [*SEARCH[1:], "optimizer.lr=interval(0.01,0.1)", *args]
    config = guard.Guard(guard._arguments(["-m", *typed])).compose(typed, sweep=True).cfg
    with pytest.raises(ConfigError, match=re.escape(said)):
        check_search(config, typed)


@pytest.mark.parametrize("args,said", [  # the rest are checked in process above, through the same check
    (["experiment=zz_search"], "zz_search.yaml: hydra.sweeper.params: optimizer.lr: interval(0.1 does not parse"),
    (["optimizer.lr=interval(0.01,0.1)", "hydra.sweeper.storage=postgresql://nobody@127.0.0.1:1/none"],
     "hydra.sweeper.storage=postgresql://nobody@127.0.0.1:1/none cannot be opened"),
])
def test_a_bad_search_is_one_line_and_exit_2_with_no_sweep_dir(tmp_path, args, said):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "zz_search.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      optimizer.lr: interval(0.1\n")
    proc = run_cli(*SEARCH, *args, "max_steps=10", cwd=tmp_path)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments"]  # no sweep dir
