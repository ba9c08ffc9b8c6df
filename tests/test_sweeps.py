"""Sweeps: reports (failed jobs included), the joblib launcher, Optuna, provenance and the progress bar."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, run_cli

QUICK = [*TINY, "max_steps=20", "log_every=10", "checkpoint_every=20", "eval_splits=[test]"]


def test_a_failed_job_is_reported_and_the_others_still_run(tmp_path):
    proc = run_cli("-m", *QUICK, "optimizer.lr=0.1,1e30,0.05", f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 of 3 jobs failed: 1" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "failed"), ("2", "completed")]
    assert rows[1]["error"].startswith("TrainingError: loss is") and rows[1]["overrides"].endswith("optimizer.lr=1e+30")
    assert float(rows[0]["precision_test"]) > 0 and float(rows[2]["examples_per_sec"]) > 0
    report = (tmp_path / "report.md").read_text()
    assert "3 jobs, 2 completed, 1 failed, 0 interrupted, 0 incomplete." in report and "![plot_optimizer.lr.png]" in report
    assert (tmp_path / "plot_optimizer.lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # python -m runner.report rebuilds it for a past sweep
    for name in ("report.md", "report.csv", "plot_optimizer.lr.png"):
        (tmp_path / name).unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "runner.report", str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True)
    assert rebuilt.returncode == 0 and (tmp_path / "report.md").read_text() == report
    assert (tmp_path / "plot_optimizer.lr.png").exists()


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


def test_optuna_sweep_returns_the_objective(tmp_path):
    proc = run_cli("-m", "experiment=optuna_lr", *QUICK, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_params" in best and "optimizer.lr" in best
    assert len(list(csv.DictReader((tmp_path / "report.csv").open()))) == 2


def test_provenance_records_what_made_the_run(tmp_path):
    assert run_cli(*QUICK, "seed=3", f"run_dir={tmp_path}").returncode == 0
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["seed"] == 3 and "seed=3" in record["overrides"]
    assert set(record["git"]) == {"sha", "dirty"} and record["packages"]["tensorflow"].startswith("2.21")
    assert record["devices"]["towers"] == ["/cpu:0"] and record["config"]["seed"] == 3
    assert "cpu_compiler" in record["tensorflow_build"] or record["tensorflow_build"]


def test_progress_bar_or_tutorial_lines(tmp_path):
    bar = run_cli(*QUICK, "progress=bar", f"run_dir={tmp_path}/bar")
    assert bar.returncode == 0 and "examples_per_sec=" in bar.stdout and "Step 10: loss" not in bar.stdout
    assert "20/20" in bar.stdout
    lines = run_cli(*QUICK, f"run_dir={tmp_path}/lines")  # not a terminal: the tutorial's lines
    assert "Step 10: loss = " in lines.stdout and "examples_per_sec=" not in lines.stdout


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    proc = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *QUICK,
                   "batch_size=50,100", f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
