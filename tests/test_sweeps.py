"""Sweeps: reports (failed jobs included), the joblib launcher, Optuna, provenance and the progress bar."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.engine.checkpoints import latest_checkpoint
from tests.helpers import (
    AS_USER,
    ROOT,
    TINY,
    compose,
    one_complete_sweep,
    run_cli,
    steps_saved,
    stop_when,
    submitit_logs,
    sweep_dirs,
)

QUICK = [*TINY, "max_steps=20", "log_every=10", "checkpoint_every=20", "eval_splits=[test]"]


@pytest.mark.slow  # a sweep (STYLE.md: sweeps in the slow tier)
def test_a_failed_job_is_reported_and_the_others_still_run(tmp_path):
    proc = run_cli("-m", *QUICK, "optimizer.lr=0.1,1e30,0.05", f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 of 3 jobs failed: 1" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "failed"), ("2", "completed")]
    assert rows[1]["error"].startswith("TrainingError: loss is") and rows[1]["overrides"].endswith("optimizer.lr=1e+30")
    assert float(rows[0]["precision_test"]) > 0 and float(rows[2]["examples_per_sec"]) > 0
    report = (tmp_path / "report.md").read_text()
    assert "3 jobs, 2 completed, 1 failed, 0 interrupted, 0 incomplete." in report
    assert "![plot_optimizer.lr.png]" in report
    assert (tmp_path / "plot_optimizer.lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hparams = [len(list(d.glob("events.out.tfevents.*.hparams"))) for d in (tmp_path, *(tmp_path / j for j in "012"))]
    assert hparams == [1, 1, 1, 1]  # the sweep's and each job's HParams (read back in tests/test_tensorboard.py)
    # python -m runner.report rebuilds it for a past sweep
    for name in ("report.md", "report.csv", "plot_optimizer.lr.png"):
        (tmp_path / name).unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "runner.report", str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True)
    assert rebuilt.returncode == 0 and (tmp_path / "report.md").read_text() == report
    assert (tmp_path / "plot_optimizer.lr.png").exists()


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_with_divided_threads(tmp_path):
    proc = run_cli("-m", "hydra/launcher=parallel", *QUICK, "pipeline=feed_dict,tf_data", "hardware=cpu,cpu2",
                   f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    logs = "".join(p.read_text() for p in tmp_path.glob("*/runner.log"))
    share = max(1, (os.cpu_count() or 1) // 2)
    assert logs.count(f"2 parallel jobs: TensorFlow thread pools of {share} (intra) and {share} (inter) per job") == 4
    configs = [json.loads((tmp_path / r["job"] / "provenance.json").read_text()) for r in rows]
    assert all(c["config"]["hardware"]["intra_op_threads"] == 0 for c in configs)  # the config is untouched
    for job in range(4):  # the jobs share the terminal: each line says whose it is; each job's log file is plain
        assert f"[job {job}] Building: " in proc.stdout + proc.stderr
        assert "[job " not in (tmp_path / str(job) / "runner.log").read_text()


def test_provenance_records_what_made_the_run_and_a_progress_bar_replaces_the_tutorials_lines(tmp_path, capsys,
                                                                                              tiny_digits):
    """(Output that is not a terminal gets the tutorial's lines: tests/test_cli.py, tests/test_tensorboard.py.)"""
    from runner.cli.app import run

    typed = [*QUICK, "seed=3", "progress=bar"]
    run(compose(*typed), str(tmp_path), typed)  # in this process, as the command line runs it
    out = capsys.readouterr()
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["seed"] == 3 and "seed=3" in record["overrides"]
    assert set(record["git"]) == {"sha", "dirty"} and record["packages"]["tensorflow"].startswith("2.21")
    assert record["devices"]["towers"] == ["/cpu:0"] and record["config"]["seed"] == 3
    assert record["tensorflow_build"]["is_cuda_build"] in ("True", "False")  # TensorFlow's own build record
    shown = out.out + out.err
    assert "examples_per_sec=" in shown and "Step 10: loss" not in shown and "20/20" in shown, shown


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    proc = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *QUICK,
                   "batch_size=50,100", f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}


def _interrupt_sweep(args: list[str], sig: signal.Signals, wait_for: str = "Step 20: ",
                     cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Starts a sweep, sends ``sig`` once a job trains, and returns the finished process's output."""
    return stop_when(args, wait_for, sig, cwd=cwd, timeout=120)


@pytest.mark.slow  # a sweep (STYLE.md: sweeps in the slow tier)
def test_a_signal_stops_the_whole_sweep_and_a_rerun_continues_it(tmp_path):
    sweep = [*TINY, "log_every=10", "checkpoint_every=100000", "eval_splits=[test]", "optimizer.lr=0.05,0.1,0.2",
             f"hydra.sweep.dir={tmp_path}"]
    stopped = _interrupt_sweep(["-m", *sweep, "max_steps=1000000"], signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    said = "stopped: SIGTERM; 3 job(s) interrupted (0, 1, 2). Rerun the same command to continue them."
    assert said in stopped.stdout
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "interrupted"), ("1", "interrupted"), ("2", "interrupted")]
    assert rows[0]["error"].startswith("SIGTERM at step") and rows[1]["error"] == "not started: the sweep was stopped"
    step = steps_saved(tmp_path / "0")
    assert step >= 20 and not (tmp_path / "1" / "checkpoints").exists()
    # The rerun (here with a reachable max_steps, which a resume may change) resumes job 0 and runs the others.
    rerun = run_cli("-m", *sweep, f"max_steps={step + 20}", timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"Resuming from {tmp_path}/0/checkpoints/model.ckpt-{step} at step {step}" in rerun.stdout
    assert json.loads((tmp_path / "0" / "summary.json").read_text())["steps_this_run"] == 20
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [r["status"] for r in rows] == ["completed"] * 3 and not (tmp_path / ".interrupted").exists()
    again = run_cli("-m", *sweep, f"max_steps={step + 20}", timeout=300)
    assert again.returncode == 0 and again.stdout.count("finished in an earlier run of this sweep: skipped") == 3


@pytest.mark.slow
@pytest.mark.engines
@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_a_sweep_as_typed_on_a_launcher_has_one_dir_and_a_rerun_skips_its_jobs(launcher, tmp_path):
    """The basic launcher's case is in the fast tier (tests/test_readme.py); SLURM's in tests/test_slurm.py; Ray's
    in tests/test_ray.py."""
    args = ["-m", f"hydra/launcher={launcher}", "batch_size=50,100", "max_steps=20", "eval_splits=[test]", *TINY]
    proc = run_cli(*args, cwd=tmp_path, timeout=600, unset=AS_USER)
    sweep = one_complete_sweep(tmp_path, 2, proc, submitit_logs(tmp_path))
    rerun = run_cli(*args, cwd=tmp_path, timeout=600)
    assert one_complete_sweep(tmp_path, 2, rerun) == sweep
    assert (rerun.stdout + submitit_logs(tmp_path)).count("finished in an earlier run of this sweep: skipped") == 2


@pytest.mark.slow
def test_hydra_sweep_dir_given_on_the_command_line_wins(tmp_path):
    proc = run_cli("-m", "batch_size=50", "max_steps=5", "eval_splits=[test]", *TINY, "hydra.sweep.dir=mine",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not sweep_dirs(tmp_path) and (tmp_path / "mine" / "0" / "summary.json").exists()
    assert "1 jobs, 1 completed" in (tmp_path / "mine" / "report.md").read_text()


def test_the_same_sweep_command_finds_the_same_sweep_dir():
    from runner.sweeps.sweep import sweep_key

    assert sweep_key(["a=1,2", "b=3"]) == sweep_key(["b=3", "a=1,2"]) != sweep_key(["a=1,2", "b=4"])


@pytest.mark.slow
def test_a_signal_stops_a_parallel_sweep_with_checkpoints(tmp_path):
    sweep = ["-m", "hydra/launcher=parallel", *TINY, "log_every=10", "checkpoint_every=100000", "eval_splits=[test]",
             "optimizer.lr=0.05,0.1,0.2,0.3", f"hydra.sweep.dir={tmp_path}", "max_steps=1000000"]
    stopped = _interrupt_sweep(sweep, signal.SIGINT, wait_for="~] Step 20: ")  # its jobs' lines are "[job N] ..."
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stdout[-3000:]
    assert "Traceback" not in stopped.stdout
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert {r["status"] for r in rows} == {"interrupted"}
    trained = [r["job"] for r in rows if r["error"].startswith("SIGINT at step")]
    assert trained and all(latest_checkpoint(tmp_path / job) for job in trained)


@pytest.mark.slow
def test_a_signal_to_a_sweep_as_typed_and_the_same_command_continues_it(tmp_path):
    """In the default sweep dir: the rerun is the very same command, and it finds the interrupted job."""
    sweep = ["-m", *TINY, "optimizer.lr=0.05,0.1", "max_steps=5000", "log_every=100", "checkpoint_every=100000",
             "eval_splits=[test]"]
    stopped = _interrupt_sweep(sweep, signal.SIGTERM, wait_for="Step 300: ", cwd=tmp_path)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    [sweep_dir] = sweep_dirs(tmp_path)
    step = steps_saved(sweep_dir / "0")
    assert not (sweep_dir / ".running").exists() and (sweep_dir / "0" / "interrupted.txt").exists()
    rerun = run_cli(*sweep, cwd=tmp_path, timeout=600)
    assert one_complete_sweep(tmp_path, 2, rerun) == sweep_dir
    assert f"Resuming from {sweep_dir}/0/checkpoints/model.ckpt-{step} at step {step}" in rerun.stdout
    assert json.loads((sweep_dir / "0" / "summary.json").read_text())["steps_this_run"] == 5000 - step


def test_a_killed_jobs_running_marker_is_cleared_when_the_sweep_starts_again(tmp_path):
    from runner.sweeps import sweep as sweeps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sweeps.job(tmp_path):  # this process runs a job: its marker stays while it runs
        running = tmp_path / sweeps.RUNNING
        (running / f"{socket.gethostname()}-{dead.pid}").write_text("")  # a job killed with SIGKILL left this
        (running / f"other-node-{dead.pid}").write_text("")  # another machine's job: not this machine's to judge
        sweeps.clear_stale(tmp_path)
        assert sorted(p.name for p in running.iterdir()) == sorted([f"other-node-{dead.pid}",
                                                                    f"{socket.gethostname()}-{os.getpid()}"])
        (running / f"other-node-{dead.pid}").unlink()
    assert not running.exists()  # the last job's end takes the folder with it


def _children(pid: int) -> list[int]:
    """The processes sweep process ``pid`` started (its jobs' processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(proc.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie has ended)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.slow  # a parallel sweep, its process killed
def test_no_pool_worker_outlives_its_sweep_killed_with_sigkill(tmp_path):
    """kill -9 of a parallel sweep's process: its workers notice, checkpoint their jobs (interrupted) and exit; the
    same command then continues the jobs from their checkpoints."""
    args = ["-m", "hydra/launcher=parallel", *TINY, "log_every=50", "checkpoint_every=200", "eval_splits=[test]",
            "optimizer.lr=0.05,0.1", "max_steps=1000000"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "Step 300:" in line:
                break
        workers = _children(proc.pid)
        assert workers, "no job process found"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.time() + 120
        while _alive(workers) and time.time() < deadline:
            time.sleep(1)
        assert not _alive(workers), "a job's process outlived its sweep"
    finally:
        proc.kill()
    (sweep,) = sweep_dirs(tmp_path)
    for job in ("0", "1"):
        assert (sweep / job / "interrupted.txt").exists() and steps_saved(sweep / job) > 0  # saved on its stop


@pytest.mark.slow  # a parallel sweep with one job killed
def test_a_parallel_job_killed_with_sigkill_is_failed_and_the_others_go_on(tmp_path):
    """One job's process killed -9 (as the out-of-memory killer does): that job is recorded as failed, with why;
    the other jobs run to the end; the report is written; the sweep exits 1 (a job failed), without a traceback."""
    args = ["-m", "hydra/launcher=parallel", *TINY, "log_every=50", "checkpoint_every=100", "eval_splits=[test]",
            "optimizer.lr=0.05,0.1,0.2", "max_steps=600"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if "Step 100:" in line:
                break
        (sweep,) = sweep_dirs(tmp_path)
        victim = int(next((sweep / ".running").iterdir()).name.rsplit("-", 1)[1])
        os.kill(victim, signal.SIGKILL)
        out.append(proc.stdout.read())
        proc.wait(timeout=300)
    finally:
        proc.kill()
    text = "".join(out)
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text and "TerminatedWorkerError" not in text
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed"], rows
    (failed,) = [r for r in rows if r["status"] == "failed"]
    assert failed["error"].startswith("JobKilled: the process running this job was killed by SIGKILL")
