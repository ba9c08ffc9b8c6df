"""What a config may do: name runner's parts and settings, never code to import or run. runner composes the config
Hydra will act on (every defaults list, search path and experiment applied) and holds it against an allow-list
before Hydra acts on it. Each way past the old key-only guard is tried here with a module that records its own import,
so "nothing ran" is checked, not assumed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.config import guard
from runner.core.errors import ConfigError
from tests.helpers import ROOT, project_copy, run_cli

HINT = "to allow it, set RUNNER_ALLOW_TARGETS=1 in the environment"


@pytest.fixture
def payload(tmp_path):
    """A module ``payload`` on the path whose import, or any call into it, writes a marker file."""
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "ran"
    (code / "payload.py").write_text(
        "import logging, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def f(*a, **k):\n    return None\n"
        "class Handler(logging.Handler):\n    pass\n"
        "class Sampler:\n    def __init__(self, *a, **k):\n        pass\n")
    work = tmp_path / "work"
    work.mkdir()
    return {"env": {"PYTHONPATH": str(code)}, "marker": marker, "cwd": work}


def refused(proc: subprocess.CompletedProcess, payload: dict, where: str | None, key: str) -> None:
    """Exit 2, one line naming where the key was set and the key (``where`` None: a key the config's schema does
    not have, refused by it), nothing imported, nothing written."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("(-m with --cfg")]
    said = f"error: {where}: {key}: " if where else f"error: {key}: Key "
    assert len(lines) == 1 and lines[0].startswith(said), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not payload["marker"].exists(), "the payload ran"
    assert not [p for p in payload["cwd"].iterdir() if p.name not in ("experiments",)]  # no run dir, no sweep dir


# The seven ways past the old guard, as a careful user found them.

def test_1_a_logging_handler_class_on_the_command_line(payload):
    proc = run_cli("+hydra.job_logging.handlers.x.class=payload.Handler", "max_steps=1",
                   cwd=payload["cwd"], env=payload["env"])
    refused(proc, payload, "the command line", "hydra.job_logging.handlers.x")
    assert "changes Hydra's logging" in proc.stderr and HINT in proc.stderr


def _project_with(tmp_path: Path, files: dict[str, str]) -> Path:
    project = project_copy(tmp_path / "project")
    for name, text in files.items():
        (project / "experiments" / f"{name}.yaml").write_text("# @package _global_\n" + text)
    return project


def test_2_an_experiment_whose_log_file_is_a_dotfile(tmp_path, payload):
    target = tmp_path / "bashrc"
    project = _project_with(tmp_path, {"zz_log": (
        "hydra:\n  job_logging:\n    formatters:\n      sh:\n        format: 'touch pwned'\n"
        f"    handlers:\n      f:\n        class: logging.FileHandler\n        filename: {target}\n"
        "        formatter: sh\n    root:\n      handlers: [f]\n")})
    proc = run_cli("experiment=zz_log", "max_steps=1", cwd=project, env=payload["env"])
    assert proc.returncode == 2 and "error: experiments/zz_log.yaml: hydra.job_logging." in proc.stderr, proc.stderr
    assert not target.exists() and not (project / "outputs").exists()


def test_3_an_experiment_that_sets_git_config_in_the_environment(tmp_path, payload):
    project = _project_with(tmp_path, {"zz_env": (
        "hydra:\n  job:\n    env_set:\n      GIT_CONFIG_COUNT: '1'\n      GIT_CONFIG_KEY_0: core.fsmonitor\n"
        f"      GIT_CONFIG_VALUE_0: 'touch {payload['marker']}; false'\n")})
    proc = run_cli("experiment=zz_env", "max_steps=1", cwd=project, env=payload["env"])
    assert proc.returncode == 2, proc.stderr
    assert "error: experiments/zz_env.yaml: hydra.job.env_set.GIT_CONFIG_COUNT: sets the environment variable" \
           in proc.stderr
    assert not payload["marker"].exists() and not (project / "outputs").exists()


def test_git_for_provenance_runs_no_configured_command(tmp_path, monkeypatch):
    """Whatever the environment holds, provenance's git runs no fsmonitor, hook or pager the config names."""
    from runner.run import provenance

    marker = tmp_path / "pwned"
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {marker}; false")
    assert provenance._git("status", "--porcelain", "--untracked-files=no") is not None
    assert not marker.exists()


def test_4_a_callback_two_experiments_deep(tmp_path, payload):
    project = _project_with(tmp_path, {
        "zz_outer": "defaults:\n  - zz_middle\n",
        "zz_middle": "defaults:\n  - zz_inner\n",
        "zz_inner": "hydra:\n  callbacks:\n    x:\n      _target_: payload.f\n"})
    proc = run_cli("experiment=zz_outer", "max_steps=1", cwd=project, env=payload["env"])
    assert proc.returncode == 2, proc.stderr
    assert "error: experiments/zz_inner.yaml: hydra.callbacks.x._target_: names code to import" in proc.stderr
    assert not payload["marker"].exists() and not (project / "outputs").exists()


def test_5_an_experiment_found_on_an_added_search_path(tmp_path, payload):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "experiment").mkdir(parents=True)
    (elsewhere / "experiment" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: payload.f\n")
    proc = run_cli(f"hydra.searchpath=[file://{elsewhere}]", "experiment=evil", "max_steps=1",
                   cwd=payload["cwd"], env=payload["env"])
    assert proc.returncode == 2, proc.stderr
    assert not payload["marker"].exists() and not any(payload["cwd"].iterdir())
    assert "error: " in proc.stderr and ("hydra.callbacks.x._target_" in proc.stderr
                                         or "hydra.searchpath" in proc.stderr)


@pytest.mark.parametrize("flags", [["-cd", "CONF", "-cn", "evil"], ["--config-dir", "CONF", "--config-name=evil"],
                                   ["--config-dir=CONF"], ["-cn", "evil"], ["-cp", "CONF"]])
def test_6_another_config_dir_or_name(tmp_path, payload, flags):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "evil.yaml").write_text("hydra:\n  callbacks:\n    x:\n      _target_: payload.f\n")
    proc = run_cli(*[f.replace("CONF", str(conf)) for f in flags], cwd=payload["cwd"], env=payload["env"])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --config-") and HINT in proc.stderr
    assert not payload["marker"].exists() and not any(payload["cwd"].iterdir())


def test_7_a_target_inside_a_dict_value(payload):
    proc = run_cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler={_target_: payload.Sampler}",
                   "batch_size=choice(50,100)", cwd=payload["cwd"], env=payload["env"])
    refused(proc, payload, None, "hydra.sweeper.sampler._target_")  # runner's sweeper: a sampler by name, no code


# More ways past it, found by a second probe.

@pytest.mark.parametrize("args,key", [
    (["++hydra={callbacks:{x:{_target_:payload.f}}}"], "hydra.callbacks.x._target_"),
    (["+hydra.callbacks.x._target_=payload.f"], "hydra.callbacks.x._target_"),
    (["hydra.launcher._target_=payload.f"], "hydra.launcher._target_"),
    (["+dataset.x._target_=payload.f"], "dataset.x._target_"),
    (["+deep=[{a: {b: [{_target_: payload.f}]}}]"], "deep.0.a.b.0._target_"),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.custom_search_space=payload.f"],
     "hydra.sweeper.custom_search_space"),
    (["+hydra.job.env_set.LD_PRELOAD=/tmp/x.so"], "hydra.job.env_set.LD_PRELOAD"),
    (["hydra.job.name=../../x"], "hydra.job.name"),
    (["hydra.output_subdir=/tmp/x"], "hydra.output_subdir"),
])
def test_more_ways_on_the_command_line(payload, args, key):
    proc = run_cli(*args, "max_steps=1", cwd=payload["cwd"], env=payload["env"])
    refused(proc, payload, None if "sweeper" in key else "the command line", key)  # runner's sweeper has no such key


def test_a_group_option_that_is_a_path_in_any_group(tmp_path, payload):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.yaml").write_text("hydra:\n  callbacks:\n    x:\n      _target_: payload.f\n")
    for arg in (f"+preset=../../../../../../../../{tmp_path}/elsewhere/x", f"experiment={tmp_path}/elsewhere/x"):
        proc = run_cli(arg, "max_steps=1", cwd=payload["cwd"], env=payload["env"])
        assert proc.returncode == 2 and "named without a path" in proc.stderr, proc.stderr
        assert not payload["marker"].exists() and not any(payload["cwd"].iterdir())


def test_experimental_rerun_is_refused(tmp_path, payload):
    pickle = tmp_path / "config.pickle"
    pickle.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    proc = run_cli("--experimental-rerun", str(pickle), cwd=payload["cwd"], env=payload["env"])
    assert proc.returncode == 2 and proc.stderr.startswith("error: --experimental-rerun: it unpickles a file")


def test_shell_lines_only_from_the_command_line(tmp_path, payload):
    project = _project_with(tmp_path, {"zz_setup": "defaults:\n  - override /hydra/launcher: slurm\n"
                                                   "hydra:\n  launcher:\n    setup: ['touch pwned']\n"})
    proc = run_cli("-m", "experiment=zz_setup", "batch_size=50,100", cwd=project, env=payload["env"])
    assert proc.returncode == 2, proc.stderr
    assert "error: experiments/zz_setup.yaml: hydra.launcher.setup: holds shell lines" in proc.stderr
    assert not (project / "multirun").exists()
    typed = guard.check(["-m", "hydra/launcher=slurm", "hydra.launcher.setup=[module load cuda]", "batch_size=50,100"])
    assert typed is not None  # the user's own command line may


def test_a_sweep_over_experiments_checks_each(tmp_path, payload):
    project = _project_with(tmp_path, {"zz_good": "max_steps: 3\n",
                                       "zz_bad": "hydra:\n  callbacks:\n    x:\n      _target_: payload.f\n"})
    for args in (["experiment=zz_good,zz_bad"], ["experiment=choice(zz_good,zz_bad)"], ["experiment=glob(zz_*)"]):
        proc = run_cli("-m", *args, cwd=project, env=payload["env"])
        assert proc.returncode == 2, proc.stderr
        assert "error: experiments/zz_bad.yaml: hydra.callbacks.x._target_" in proc.stderr
        assert not payload["marker"].exists() and not (project / "multirun").exists()
    params = _project_with(tmp_path / "p2", {"zz_params": "hydra:\n  sweeper:\n    params:\n"
                                                          "      experiment: zz_bad\n",
                                             "zz_bad": "hydra:\n  job_logging:\n    root:\n      level: DEBUG\n"})
    proc = run_cli("-m", "experiment=zz_params", cwd=params, env=payload["env"])
    assert proc.returncode == 2 and "experiments/zz_bad.yaml: hydra.job_logging.root.level" in proc.stderr


# What stays allowed.

@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml")))
def test_every_experiment_of_the_project_is_accepted(name):
    assert guard.check(["experiment=" + name]) is not None
    assert guard.check(["-m", "experiment=" + name]) is not None


@pytest.mark.parametrize("args", [
    ["-m", "hydra/launcher=basic"], ["-m", "hydra/launcher=parallel"], ["-m", "hydra/launcher=joblib"],
    ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"],
    ["-m", "hydra/launcher=submitit_local"], ["-m", "hydra/launcher=submitit_slurm"],
    ["-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.address=127.0.0.1:6379"],
    ["-m", "hydra/launcher=ray"],
    ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1"],
    *[["-m", "hydra/sweeper=optuna", f"hydra/sweeper/sampler={s}"] for s in ("tpe", "random", "cmaes", "nsgaii",
                                                                          "grid")],
    ["hydra.run.dir=somewhere", "hydra.job.chdir=false", "hydra.verbose=true"],
    ["-m", "hydra.sweep.dir=sweeps/x", "hydra.sweep.subdir=j${hydra.job.num}", "batch_size=50,100"],
    ["+hydra.job.env_set.TF_CPP_MIN_LOG_LEVEL=0", "+hydra.job.env_set.CUDA_VISIBLE_DEVICES=0"],
    ["-m", "experiment=choice(pipeline_shootout,queue_sweep)"], ["-m", "experiment=glob(own_*)"],
    ["-m", "pipeline=glob(*)", "seed=range(3)", "optimizer.lr=0.1,0.2"],
    ["hydra/job_logging=disabled"], ["run_dir=/data/x"],
])
def test_the_shipped_launchers_sweepers_and_settings_compose_clean(args):
    assert guard.check(args) is not None


def test_the_switch_lets_a_user_run_a_callback_of_their_own(payload):
    proc = run_cli("+hydra.callbacks.mine._target_=payload.Sampler", "--cfg", "job", cwd=payload["cwd"],
                   env={**payload["env"], "RUNNER_ALLOW_TARGETS": "1"})
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("+hydra.callbacks.mine._target_=payload.Sampler", "max_steps=0", "log_every=1",
                   "dataset.num_train=200", "dataset.num_test=100", "dataset.validation_size=100",
                   "eval_splits=[]", cwd=payload["cwd"], env={**payload["env"], "RUNNER_ALLOW_TARGETS": "1"})
    assert payload["marker"].exists(), proc.stderr  # instantiated: the switch lets it run


def test_a_config_cannot_set_the_switch():
    with pytest.raises(ConfigError, match="hydra.job.env_set.RUNNER_ALLOW_TARGETS"):
        guard.check(["+hydra.job.env_set.RUNNER_ALLOW_TARGETS=1"])
    assert os.environ.get("RUNNER_ALLOW_TARGETS") is None


def test_launchers_and_sweepers_are_still_chosen_by_name(tmp_path):
    proc = run_cli("hydra/launcher=parallel", "hydra/sweeper=optuna", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "runner_launchers.parallel.ParallelLauncher" in proc.stdout and "OptunaSweeper" in proc.stdout


def test_a_sweeps_hydra_config_is_shown_as_the_readme_writes_it(tmp_path):
    proc = run_cli("-m", "hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout and "partition:" in proc.stdout and "Traceback" not in proc.stderr


def test_runners_own_configs_name_no_code_but_its_callbacks_and_launcher():
    found = {}
    for path in [*sorted((ROOT / "conf").rglob("*.yaml")), *sorted((ROOT / "experiments").glob("*.yaml"))]:
        document = yaml.safe_load(path.read_text()) or {}
        keys = [".".join(map(str, p)) for p, _ in guard._targets(document)]
        if keys:
            found[str(path.relative_to(ROOT))] = keys
    assert found == {"conf/config.yaml": ["hydra.callbacks.validate._target_", "hydra.callbacks.report._target_"],
                     "conf/hydra/launcher/parallel.yaml": ["_target_"], "conf/hydra/sweeper/optuna.yaml": ["_target_"]}
    launcher = yaml.safe_load((ROOT / "conf" / "hydra" / "launcher" / "parallel.yaml").read_text())
    assert launcher["_target_"] == "hydra_plugins.runner_launchers.parallel.ParallelLauncher"  # runner's own
    sweeper = yaml.safe_load((ROOT / "conf" / "hydra" / "sweeper" / "optuna.yaml").read_text())
    assert sweeper["_target_"] == "hydra_plugins.runner_sweepers.optuna.OptunaSweeper"
    callbacks = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["hydra"]["callbacks"]
    assert {name: c["_target_"] for name, c in callbacks.items()} == {
        "validate": "runner.cli.app.ValidateBeforeRun", "report": "runner.sweeps.report.SweepReport"}
