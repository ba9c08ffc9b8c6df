"""provenance.json: what produced a run (config, overrides, code version, packages, TensorFlow build, devices)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from runner.core.files import write_json

PACKAGES = ("runner", "tensorflow", "hydra-core", "omegaconf", "numpy", "protobuf")
ROOT = Path(__file__).resolve().parents[2]  # the project: runner/run/provenance.py


# git runs no command a config or the environment names: no fsmonitor, hooks or pager, and no GIT_* variables
# (GIT_CONFIG_COUNT/KEY/VALUE set any option).
GIT = ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.pager=cat"]


def _git(*args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        out = subprocess.run([*GIT, *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                             env={**env, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(config: dict, overrides: list[str], devices: list[str], seed: int) -> dict:
    import tensorflow as tf  # loaded by the run already; this module is read while the config is composed

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "overrides": overrides,
        "git": {"sha": sha, "dirty": bool(status) if status is not None else None},
        "packages": {p: _version(p) for p in PACKAGES},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "tensorflow_build": {k: str(v) for k, v in tf.sysconfig.get_build_info().items()},
        "devices": {"towers": devices,
                    "physical": [d.name for d in tf.config.list_physical_devices()]},
        "seed": seed,
        "config": config,
    }


def write(run_dir: str | Path, **kwargs) -> dict:
    record = collect(**kwargs)
    write_json(Path(run_dir) / "provenance.json", record)
    return record
