"""runner as a wheel installs it: the configs ship in the package, and a user's experiments are found in the folder
the command runs in (or the folder ``hydra.searchpath`` names), never in the installed package."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY, run_cli, user_env

TUNED = "# Written by mode=tune"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding runner's built wheel, and no other copy of runner: its dependencies come from this
    venv's site-packages (no network), read as a plain path, so this venv's editable runner is not seen."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in ("runner", "hydra_plugins", "experiments", "conf"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work), str(source)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(work.glob("runner-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (Path(packages) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    shutil.rmtree(source)
    return python


def installed_runner(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "runner", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=user_env())


def test_the_wheel_carries_the_configs_and_runs_from_an_empty_folder(installed, tmp_path):
    where = subprocess.run([str(installed), "-c", "import importlib.util, runner.config.hydra as h; "
                            "print(importlib.util.find_spec('runner').origin); print(h.CONF_DIR)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(installed.parent.parent) for p in where), where  # not this checkout
    assert (Path(where[1]) / "config.yaml").is_file()
    assert (Path(where[1]) / "experiment" / "cifar10_tutorial.yaml").is_file()  # runner's own experiments ship

    shown = installed_runner(installed, "experiment=cifar10_tutorial", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "name: cifar10_cnn" in shown.stdout

    run = installed_runner(installed, *TINY, "max_steps=20", "log_every=10", "checkpoint_every=20",
                           "eval_splits=[test]", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Step 10: loss = " in run.stdout
    assert list((tmp_path / "outputs").glob("*/*/summary.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # nothing beside the run


def test_a_users_experiments_folder_is_on_the_search_path_of_the_installed_runner(installed, tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text("# @package _global_\nbatch_size: 7\n")
    shown = installed_runner(installed, "experiment=mine", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "batch_size: 7" in shown.stdout

    # mode=tune writes into the same folder: refused before the search when a file there is not one tune wrote.
    (tmp_path / "experiments" / "fast.yaml").write_text("# @package _global_\n# mine\nbatch_size: 9\n")
    refused = installed_runner(installed, "mode=tune", "tune.name=fast", cwd=tmp_path)
    assert refused.returncode == 2
    assert "tune.name=fast: experiments/fast.yaml exists and mode=tune did not write it" in refused.stdout
    assert not (tmp_path / "outputs").exists()


def test_hydra_searchpath_names_another_experiments_folder(tmp_path):
    other = tmp_path / "team" / "exps"
    other.mkdir(parents=True)
    (other / "shared.yaml").write_text("# @package _global_\nmax_steps: 123\n")
    work = tmp_path / "work"
    work.mkdir()
    shown = run_cli(f"hydra.searchpath=[experiments://{other}]", "experiment=shared", "--cfg", "job", cwd=work)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "max_steps: 123" in shown.stdout
    missing = run_cli("experiment=shared", "--cfg", "job", cwd=work)  # not in work/experiments
    assert missing.returncode == 2
    assert "experiment=shared is not an option of experiment" in missing.stdout + missing.stderr


def test_a_searchpath_entry_that_is_not_experiments_or_a_package_is_refused(tmp_path):
    refused = run_cli(f"hydra.searchpath=[file://{tmp_path}]", "--cfg", "job", cwd=tmp_path)
    assert refused.returncode == 2
    assert f"adds file://{tmp_path} to the config search path" in refused.stdout + refused.stderr
