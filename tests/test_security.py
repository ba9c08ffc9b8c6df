"""What a config may do: name runner's parts and settings, never code to import. Hydra imports and calls whatever a
``_target_`` names (its callbacks, launchers and sweepers); runner refuses one on the command line or in an
experiment, and an experiment from outside experiments/, before Hydra reads the config."""
from __future__ import annotations

import pytest
import yaml

from runner.guard import targets
from tests.helpers import ROOT, project_copy, run_cli


@pytest.mark.parametrize("args,key", [
    (["+hydra.callbacks.x._target_=shutil.copyfile", "+hydra.callbacks.x._args_=[/etc/hostname,COPY]"],
     "hydra.callbacks.x._target_"),
    (["+hydra.callbacks.x._target_=payload.nothing"], "hydra.callbacks.x._target_"),
    (["hydra.launcher._target_=os.getcwd"], "hydra.launcher._target_"),
    (["+dataset.x._target_=os.system"], "dataset.x._target_"),
])
def test_a_target_on_the_command_line_is_refused_and_runs_nothing(tmp_path, args, key):
    args = [a.replace("COPY", str(tmp_path / "copy")) for a in args]
    proc = run_cli(*args, "max_steps=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"error: {key}: a config names runner's parts, never code to import" in proc.stderr
    assert not any(tmp_path.iterdir())  # no copy, no run dir


def test_an_experiment_is_a_file_of_experiments_named_without_a_path(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "evil.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n"
                                              "      _target_: shutil.copyfile\n")
    proc = run_cli(f"experiment=../../../..{tmp_path}/x/evil", "max_steps=1", cwd=tmp_path)
    assert proc.returncode == 2 and "an experiment is a file of experiments/, named without a path" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_an_experiment_that_carries_a_callback_is_refused_naming_the_file_and_key(tmp_path):
    project = project_copy(tmp_path / "project")
    (project / "experiments" / "zz_test_callback.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: shutil.copyfile\n")
    proc = run_cli("experiment=zz_test_callback", "--cfg", "job", cwd=project)
    assert proc.returncode == 2
    assert "zz_test_callback.yaml: hydra.callbacks: an experiment holds overrides of runner's settings" in proc.stderr


def test_the_switch_lets_a_user_run_a_callback_of_their_own(tmp_path):
    proc = run_cli("+hydra.callbacks.mine._target_=hydra.experimental.callback.Callback", "--cfg", "job",
                   cwd=tmp_path, env={"RUNNER_ALLOW_TARGETS": "1"})
    assert proc.returncode == 0, proc.stderr


def test_launchers_and_sweepers_are_still_chosen_by_name(tmp_path):
    proc = run_cli("hydra/launcher=parallel", "hydra/sweeper=optuna", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "JoblibLauncher" in proc.stdout and "OptunaSweeper" in proc.stdout


def test_runners_own_configs_name_no_code_but_its_two_callbacks():
    found = {}
    for path in [*sorted((ROOT / "conf").rglob("*.yaml")), *sorted((ROOT / "experiments").glob("*.yaml"))]:
        keys = targets(yaml.safe_load(path.read_text()) or {}, "")
        if keys:
            found[str(path.relative_to(ROOT))] = keys
    assert found == {"conf/config.yaml": ["hydra.callbacks"]}
    callbacks = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["hydra"]["callbacks"]
    assert {name: c["_target_"] for name, c in callbacks.items()} == {
        "validate": "runner.app.ValidateBeforeRun", "report": "runner.sweeps.report.SweepReport"}
