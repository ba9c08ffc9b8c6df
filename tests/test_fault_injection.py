"""Fault injection (slow tier): kill -9 at five moments of a run; every rerun completes, and its final precision is
an uninterrupted run's within noise."""
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli

ARGS = ["dataset.num_train=6000", "dataset.num_test=1000", "dataset.validation_size=1000", "pipeline=tf_data",
        "max_steps=600", "log_every=50", "checkpoint_every=20", "eval_splits=[test]", "optimizer.lr=0.1"]


def _kill_when(args: list[str], ready, timeout: float = 120) -> str:
    """Starts a run and kill -9s it as soon as ``ready(line)`` is true for a line it printed (or, when ``ready``
    takes no line, as soon as it returns true while the run goes on). Returns what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        deadline = time.time() + timeout
        for line in proc.stdout:
            out.append(line)
            if ready(line) or time.time() > deadline:
                break
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -9, "".join(out)[-2000:]  # killed, not finished
    return "".join(out)


def _precision(run_dir: Path) -> float:
    return json.loads((run_dir / "summary.json").read_text())["final_precision"]["test"]


def _in_checkpoint_save(run_dir: Path):
    """A ready() that waits for the first step line, then polls until a checkpoint is being written."""

    def ready(line: str) -> bool:
        if not line.startswith("Step "):
            return False
        end = time.time() + 20
        while time.time() < end:
            if list((run_dir / "checkpoints").glob("*temp*")):
                return True
        return True

    return ready


@pytest.mark.slow
def test_kill_9_at_five_moments_loses_nothing(tmp_path):
    reference = run_cli(*ARGS, f"dataset.data_dir={tmp_path}/reference_data", f"run_dir={tmp_path}/reference",
                        timeout=300)
    assert reference.returncode == 0, reference.stdout[-2000:]
    rng = random.Random(0)

    def after(text: str, delay: float):
        def ready(line: str) -> bool:
            if text in line:
                time.sleep(delay)
                return True
            return False

        return ready

    scenarios = {
        "data generation": (f"{tmp_path}/fresh1", after("Generating the digits dataset", 0.7)),
        "TFRecord conversion": (f"{tmp_path}/fresh2", after("Writing ", 0.05)),
        "checkpoint save": (f"{tmp_path}/shared", _in_checkpoint_save(tmp_path / "checkpoint save")),
        "training 1": (f"{tmp_path}/shared", after("Step 100:", rng.uniform(0.0, 0.5))),
        "training 2": (f"{tmp_path}/shared", after("Step 50:", rng.uniform(0.0, 0.5))),
    }
    for name, (data_dir, ready) in scenarios.items():
        args = [*ARGS, f"dataset.data_dir={data_dir}", f"run_dir={tmp_path / name}"]
        _kill_when(args, ready)
        rerun = run_cli(*args, timeout=300)
        assert rerun.returncode == 0, (name, rerun.stdout[-3000:])
        assert abs(_precision(tmp_path / name) - _precision(tmp_path / "reference")) < 0.05, name
        assert json.loads((tmp_path / name / "summary.json").read_text())["steps"] == 600
        assert not list(Path(data_dir).glob("**/.*.part")), name  # no leftovers of the killed writers
