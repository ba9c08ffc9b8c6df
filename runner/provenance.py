"""provenance.json: what produced a run (config, overrides, code version, packages, TensorFlow build, devices)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("runner", "tensorflow", "hydra-core", "omegaconf", "numpy", "protobuf")
ROOT = Path(__file__).resolve().parent.parent


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


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in /proc/cpuinfo (None where it can't be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name, for the figures measured on it."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str] | None:
    """The CPU's instruction-set flags (None where /proc/cpuinfo can't tell)."""
    flags = _cpuinfo("flags")
    return None if flags is None else set(flags.split())


def write(run_dir: str | Path, **kwargs) -> dict:
    record = collect(**kwargs)
    (Path(run_dir) / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
