"""runner on a real Ray: a local head started the way a user starts one (``ray start --head`` on 127.0.0.1), and a
sweep with ``hydra/launcher=ray_local`` pointed at it, as typed in an empty folder: one sweep dir, a report of every
job, a rerun that skips them, and the jobs' lines without colour codes in a file.

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps this Ray on one machine's loopback addresses (Ray's single-machine
mode); a real multi-machine Ray leaves it unset. Token authentication is on, with a token of this module's own.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import AS_USER, TINY, one_complete_sweep, run_cli

pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]' (make install includes it)")
pytestmark = [pytest.mark.slow, pytest.mark.engines]
# A loopback-only Ray with token authentication, its token private to this test module (nothing in ~/.ray).
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _ray() -> str:
    return shutil.which("ray") or str(Path(sys.executable).parent / "ray")


@pytest.mark.xdist_group("test_ray.ray_head")  # before the head starts, on the same worker: no Ray runs yet
def test_a_ray_sweep_without_an_address_starts_a_ray_of_its_own(tmp_path):
    """The launcher's default (`hydra.launcher.ray.init.address` null) where no Ray runs: a Ray started by the
    sweep for the sweep (where one runs on this machine, Ray connects to it instead)."""
    proc = run_cli("-m", "hydra/launcher=ray_local", "batch_size=50,100", "max_steps=20", "eval_splits=[test]", *TINY,
                   cwd=tmp_path, env=LOOPBACK, unset=AS_USER, timeout=600)
    one_complete_sweep(tmp_path, 2, proc)
    assert "Started a local Ray instance" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **LOOPBACK}
    started = subprocess.run([_ray(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    for _ in range(60):  # the head answers (slower when the machine is busy)
        if subprocess.run([_ray(), "status", f"--address=127.0.0.1:{port}"], capture_output=True, env=env,
                          timeout=60).returncode == 0:
            break
        time.sleep(1)
    yield f"127.0.0.1:{port}"
    subprocess.run([_ray(), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_ray_sweep_as_typed_on_a_local_head(ray_head, tmp_path):
    args = ["-m", "hydra/launcher=ray_local", f"hydra.launcher.ray.init.address={ray_head}", "batch_size=50,100",
            "max_steps=20", "eval_splits=[test]", *TINY]
    proc = run_cli(*args, cwd=tmp_path, env=LOOPBACK, unset=AS_USER, timeout=600)
    sweep = one_complete_sweep(tmp_path, 2, proc)
    assert f"Results in {sweep}/0" in proc.stdout  # written where the sweep was typed, not in the head's folder
    assert "\x1b[" not in proc.stdout + proc.stderr  # no colour codes in a pipe
    rerun = run_cli(*args, cwd=tmp_path, env=LOOPBACK, timeout=600)
    assert one_complete_sweep(tmp_path, 2, rerun) == sweep
    assert rerun.stdout.count("finished in an earlier run of this sweep: skipped") == 2



def test_a_search_on_a_local_head_prunes_through_the_study_in_the_sweep_dir(ray_head, tmp_path):
    """hydra/sweeper=optuna with the Ray launcher: each trial a Ray task reporting its evals to the study's journal
    in the sweep dir, stopped when the median pruner says so."""
    from tests.test_search import PRUNED_SEARCH, check_pruned, study_of

    proc = run_cli(*PRUNED_SEARCH, "hydra/launcher=ray_local", f"hydra.launcher.ray.init.address={ray_head}",
                   cwd=tmp_path, env=LOOPBACK, unset=AS_USER, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if p.is_dir()]
    check_pruned(sweep, study_of(sweep))
