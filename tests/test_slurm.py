"""runner on a real SLURM: a one-node cluster on 127.0.0.1 (tests/slurm.py) started from Debian's packages. A sweep
through ``hydra/launcher=slurm`` (submitit) as typed, ``scancel`` of a running job, preemption with requeue of an
``sbatch --requeue`` run, and ``srun`` tasks of a cluster on TensorFlow's distributed runtime.

Without SLURM installed, or without root, every test here is skipped with the reason.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm
from tests.helpers import AS_USER, TINY, noise, one_complete_sweep, run_cli, steps_saved, submitit_logs, sweep_dirs

pytestmark = [pytest.mark.slow, pytest.mark.engines,
              pytest.mark.skipif(slurm.unavailable() is not None, reason=str(slurm.unavailable()))]
SHORT = ["max_steps=20", "eval_splits=[test]", *TINY]
LONG = ["max_steps=8000", "log_every=100", "checkpoint_every=100000", "eval_splits=[test]", *TINY]
SWEEP = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = slurm.Cluster(tmp_path_factory.mktemp("slurm"))
    print(f"SLURM test cluster up in {running.startup_secs:.1f} s")
    yield running
    running.stop()


def _report(sweep_dir: Path) -> list[dict]:
    return list(csv.DictReader((sweep_dir / "report.csv").open()))


def _wait_for_line(path_glob, cwd: Path, text: str, cluster, timeout: float = 120) -> Path:
    def found():
        return next((p for p in cwd.glob(path_glob) if text in p.read_text(errors="replace")), None)
    return cluster.wait_for(found, timeout, f"{text!r} in {path_glob}")


def test_a_slurm_sweep_as_typed_has_one_dir_a_full_report_and_a_rerun_skips(cluster, tmp_path):
    args = [*SWEEP, "batch_size=50,100", *SHORT]
    started = time.monotonic()
    proc = run_cli(*args, cwd=tmp_path, env=cluster.env, unset=AS_USER, timeout=600)
    print(f"2-job SLURM sweep: {time.monotonic() - started:.1f} s")
    job_logs = submitit_logs(tmp_path)
    sweep = one_complete_sweep(tmp_path, 2, proc, job_logs)  # the jobs ran quietly under SLURM too
    assert "Results in" in job_logs
    # each job's thread pools fit the CPUs SLURM gave it (--cpus-per-task=1), not the node's
    assert job_logs.count("1 CPU(s) given to this process: TensorFlow thread pools of 1 (intra) and 1 (inter)") == 2
    rerun = run_cli(*args, cwd=tmp_path, env=cluster.env, timeout=600)
    assert rerun.returncode == 0 and sweep_dirs(tmp_path) == [sweep]
    assert submitit_logs(tmp_path).count("finished in an earlier run of this sweep: skipped") == 2


def test_scancel_of_a_running_sweep_job_keeps_its_checkpoint_and_a_rerun_resumes_it(cluster, tmp_path):
    args = [*SWEEP, "batch_size=50", *LONG]
    sweep = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, **cluster.env})
    try:
        _wait_for_line("multirun/*/0/runner.log", tmp_path, "Step 300:", cluster)
        [job] = [j for j in cluster.jobs() if j["state"] == "RUNNING"]
        cluster.run("scancel", job["id"])
        out = sweep.communicate(timeout=120)[0]
    finally:
        sweep.kill()
    assert sweep.returncode == 143, out[-3000:]
    [sweep_dir] = sweep_dirs(tmp_path)
    [row] = _report(sweep_dir)
    assert row["status"] == "interrupted" and row["error"].startswith("SIGTERM at step"), row
    saved = steps_saved(sweep_dir / "0")
    assert saved >= 300
    rerun = run_cli(*args, cwd=tmp_path, env=cluster.env, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert summary["steps"] == 8000 and summary["steps_this_run"] == 8000 - saved
    assert [r["status"] for r in _report(sweep_dir)] == ["completed"]


def test_preemption_of_an_sbatch_requeue_run_checkpoints_and_the_requeued_job_resumes(cluster, tmp_path):
    """SLURM preempts (here: scontrol requeue, what PreemptMode=REQUEUE does) with SIGTERM, then SIGKILL after
    KillWait; the run checkpoints in between, and the requeued job continues the same run dir."""
    command = f"{sys.executable} -m runner run_dir=outputs/slurm-$SLURM_JOB_ID {' '.join(LONG)}"
    job = cluster.run("sbatch", "--parsable", "--requeue", "--open-mode=append", "-o", "slurm-%j.out",
                      "--wrap", command, cwd=tmp_path, unset=AS_USER).stdout.strip()
    _wait_for_line(f"slurm-{job}.out", tmp_path, "Step 300:", cluster)
    cluster.run("scontrol", "requeue", job)
    requeued = time.monotonic()
    _wait_for_line(f"slurm-{job}.out", tmp_path, "stopped: SIGTERM at step", cluster, timeout=slurm.KILL_WAIT + 30)
    run_dir = tmp_path / "outputs" / f"slurm-{job}"
    cluster.wait_for(lambda: cluster.state(job) == "PENDING", 60, "the job back in the queue")
    saved = steps_saved(run_dir)
    assert saved >= 300
    # A requeued job waits ~2 minutes before it may start again; start it sooner, but only once the node has cleaned
    # up its first run and a new second has begun (slurmd refuses a job credential issued in the second it revoked
    # the old one: "Job credential revoked").
    cluster.wait_for(cluster.idle, 60, "the node idle again")
    time.sleep(max(0.0, requeued + 2 - time.monotonic()))
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    cluster.wait_for(lambda: cluster.state(job) in ("COMPLETED", "FAILED"), 300, "the requeued job's end")
    out = (tmp_path / f"slurm-{job}.out").read_text()
    assert cluster.state(job) == "COMPLETED", out[-3000:]
    assert f"Resuming from {run_dir}/checkpoints/model.ckpt-{saved} at step {saved}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 8000 and summary["steps_this_run"] == 8000 - saved
    assert not noise(out), noise(out)


def test_srun_tasks_train_one_cluster_and_leave_no_process(cluster, tmp_path):
    """The README's `srun -n N python -m runner hardware=cluster hardware.ps=1 run_dir=...` with 3 tasks
    (-O: more tasks than this node's 2 CPUs)."""
    proc = cluster.run("srun", "-n", "3", "-O", sys.executable, "-m", "runner", "hardware=cluster", "hardware.ps=1",
                       "run_dir=runs/cluster", "max_steps=200", "log_every=50", "eval_splits=[test]", *TINY,
                       cwd=tmp_path, check=False, timeout=600, unset=AS_USER)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "cluster" / "summary.json").read_text())
    assert summary["steps"] >= 200 and summary["final_precision"]["test"] > 0.2  # chance: 0.1
    assert not noise(proc.stdout + proc.stderr), noise(proc.stdout + proc.stderr)
    left = subprocess.run(["pgrep", "-f", "runner hardware=cluster"], capture_output=True, text=True).stdout
    assert not left.strip()
    cluster.wait_for(lambda: not cluster.jobs(), 60, "the queue to empty (a job COMPLETING: slurmd's clean-up)")


def test_a_search_on_slurm_prunes_through_the_study_in_the_sweep_dir(cluster, tmp_path):
    """hydra/sweeper=optuna with the SLURM launcher: each trial a SLURM job that reports its evals to the study's
    journal in the sweep dir and stops when the median pruner says so."""
    from tests.test_search import PRUNED_SEARCH, check_pruned, study_of

    proc = run_cli(*SWEEP, *PRUNED_SEARCH[1:], cwd=tmp_path, env=cluster.env, unset=AS_USER, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    check_pruned(sweep, study_of(sweep))
    assert "pruned by the study's median pruner" in submitit_logs(tmp_path)


def test_a_request_slurm_refuses_is_one_line_and_exit_2(cluster, tmp_path):
    proc = run_cli(*SWEEP, "hydra.launcher.mem_gb=100000", "batch_size=50,100", *SHORT, cwd=tmp_path, env=cluster.env,
                   timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error: the launcher could not start the sweep's jobs: sbatch: error: Memory specification can not be " \
           "satisfied; sbatch: error: Batch job submission failed" in proc.stderr
    assert "Traceback" not in proc.stderr


SERVED = """#!/bin/bash
#SBATCH --ntasks=4
#SBATCH --overcommit
#SBATCH --output=slurm-%j.out
srun {python} -m runner.service slurm pipeline=tf_data run_dir=runs/served max_steps=300 log_every=100 \\
    eval_splits=[test] optimizer.lr=0.1 {tiny}
"""


def test_an_sbatch_script_runs_a_dispatcher_two_input_workers_and_the_trainer(cluster, tmp_path):
    """The docs' sbatch script (--overcommit: 4 tasks on this node's 2 CPUs): the roles from SLURM's environment,
    the trainer reading from the service, and every task ending with it."""
    (tmp_path / "served.sh").write_text(SERVED.format(python=sys.executable, tiny=" ".join(TINY)))
    started = time.monotonic()
    job = cluster.run("sbatch", "--parsable", "served.sh", cwd=tmp_path, unset=AS_USER).stdout.strip()
    cluster.wait_for(lambda: cluster.state(job) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 600,
                     "the job's end")
    took = time.monotonic() - started
    out = (tmp_path / f"slurm-{job}.out").read_text()
    assert cluster.state(job) == "COMPLETED", out[-4000:]
    print(f"the sbatch script with a tf.data service ran in {took:.0f} s")
    roles = sorted(re.findall(r"SLURM task (\d): (\w+) \d at ", out))
    assert roles == [("0", "dispatcher"), ("1", "trainer"), ("2", "worker"), ("3", "worker")], out[-3000:]
    assert re.search(r"Input: the training batches .* made by the tf.data service at grpc://[\w.-]+:\d+, job ", out)
    summary = json.loads((tmp_path / "runs" / "served" / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["final_precision"]["test"] > 0.5  # chance: 0.1
    assert not noise(out), noise(out)
    left = subprocess.run(["pgrep", "-f", "runner.service"], capture_output=True, text=True).stdout
    assert not left.strip()
    cluster.wait_for(lambda: not cluster.jobs(), 60, "the queue to empty (a job COMPLETING: slurmd's clean-up)")
