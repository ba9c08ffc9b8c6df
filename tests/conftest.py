"""Shared fixtures: a tiny generated digits dataset per test session, composed configs, subprocess runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runner  # noqa: F401  its process settings (oneDNN) before any test module loads TensorFlow

ROOT = Path(__file__).resolve().parent.parent
if not Path("/dev/nvidia0").exists():  # no GPU here: TensorFlow need not probe CUDA in every test process (~1 s each)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
TINY = ["dataset.num_train=1200", "dataset.num_test=300", "dataset.validation_size=200"]


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory) -> Path:
    """Every test (and subprocess) reads and writes data under a private folder, never the user's cache."""
    root = tmp_path_factory.mktemp("data")
    os.environ["RUNNER_DATA_DIR"] = str(root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return root


def compose(*overrides: str):
    """The config `python -m runner OVERRIDES` would run, composed in-process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from runner.app import CONF_DIR  # registers schemas and resolvers

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def option(group: str, name: str, **overrides) -> dict:
    """A group option's values as its part's keyword arguments: from its YAML (where they live), updated."""
    from runner.build import _params

    return {**_params(compose(f"{group}={name}")[group]), **overrides}


@pytest.fixture(scope="session")
def tiny_digits(data_root):
    """The default dataset at test size (1000 train, 200 validation, 300 test), generated once."""
    from runner.build import build_dataset

    dataset = build_dataset(compose(*TINY))
    dataset.prepare()
    return dataset


def user_env(env: dict | None = None, unset: tuple[str, ...] = ()) -> dict:
    """This process's environment plus ``env``, without the variables in ``unset`` (``AS_USER``: the settings the
    tests make for speed and quiet, which a user's shell does not have)."""
    return {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}


AS_USER = ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, cwd: Path = ROOT,
            unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m runner ARGS`` as a subprocess (in ``cwd``: an empty folder for a command as a user types it)."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=user_env(env, unset))


def sweep_dirs(cwd: Path) -> list[Path]:
    """The sweep dirs a multirun typed in ``cwd`` made under its default ``multirun/``."""
    return sorted(p for p in (cwd / "multirun").iterdir() if p.is_dir()) if (cwd / "multirun").is_dir() else []


# Python's own traceback, TensorFlow's C++ start-up lines (absl-style "I0000 00:00:..." and the oneDNN notice):
# what a quiet process never prints unless verbose=true.
NOISE = ("Traceback (most recent call last)", "oneDNN custom operations are on", "cpu_feature_guard",
         "Could not find cuda drivers")


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def submitit_logs(cwd: Path) -> str:
    """What a sweep's jobs printed where submitit keeps it (locally and on SLURM): the sweep dir's .submitit/."""
    return "".join(p.read_text() for p in cwd.glob("multirun/*/.submitit/*/*_log.*"))


def steps_saved(run_dir: Path) -> int:
    """The global step of a run dir's latest checkpoint."""
    from runner.engine import latest_checkpoint

    return int(latest_checkpoint(run_dir).rsplit("-", 1)[1])


def one_complete_sweep(cwd: Path, jobs: int, proc: subprocess.CompletedProcess, logs: str = "") -> Path:
    """Checks a multirun typed in ``cwd``: it succeeded, quietly (its output and the jobs' ``logs``), into one
    sweep dir whose report lists every job completed, with no marker left; returns the sweep dir."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dirs = sweep_dirs(cwd)
    assert len(dirs) == 1, dirs  # one sweep, one sweep dir
    report = (dirs[0] / "report.md").read_text()
    assert f"{jobs} jobs, {jobs} completed, 0 failed, 0 interrupted, 0 incomplete." in report, report
    assert len(list(dirs[0].glob("*/summary.json"))) == jobs
    assert not (dirs[0] / ".running").exists() and not (dirs[0] / ".interrupted").exists()
    said = noise(proc.stdout + proc.stderr + logs)
    assert not said, said
    return dirs[0]


def pytest_itemcollected(item):
    """The tests that share a module-scoped fixture (a trained run, a local cluster) go to one xdist worker
    (`make test` runs `--dist loadgroup`), so the fixture is built once instead of once per worker. (Marked as each
    test is collected: xdist reads the groups in its own collection hook.)"""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    shared = []
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope == "module":
            param = getattr(item, "callspec", None) and item.callspec.params.get(name)
            shared.append(f"{item.module.__name__}.{name}" + (f"[{param}]" if param is not None else ""))
    if shared:
        item.add_marker(pytest.mark.xdist_group("+".join(sorted(shared))))
