"""``python -m runner.records.runs`` and ``python -m runner.records.diff`` as typed in the folder runs were made in,
on real run dirs: two finished runs (trained here) and one stopped early."""
from __future__ import annotations

import subprocess
import sys

import pytest

from runner.cli.app import run
from tests.helpers import TINY, compose, user_env

SHORT = [*TINY, "max_steps=20", "log_every=10", "checkpoint_every=10", "eval_splits=[test]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_digits):
    """A folder with outputs/a (feed_dict), outputs/b (queue, another learning rate) and outputs/c (a run whose
    summary is gone: stopped after its checkpoint at step 10)."""
    cwd = tmp_path_factory.mktemp("runs")
    run(compose(*SHORT), str(cwd / "outputs" / "a"))
    run(compose(*SHORT, "pipeline=queue", "optimizer.lr=0.05"), str(cwd / "outputs" / "b"))
    run(compose(*SHORT, "max_steps=10"), str(cwd / "outputs" / "c"))
    (cwd / "outputs" / "c" / "summary.json").unlink()
    return cwd


def _typed(cwd, module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=user_env())


def test_runs_lists_every_run_with_its_status_settings_and_metrics(runs):
    proc = _typed(runs, "runner.records.runs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    head = lines[0].split()
    assert head[:4] == ["run", "mode", "status", "steps"] and "pipeline" in head and "precision_test" in head
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert set(rows) == {"outputs/a", "outputs/b", "outputs/c"} and lines[-1] == "3 run(s)"
    assert rows["outputs/a"][2:4] == ["completed", "20"] and "feed_dict" in rows["outputs/a"]
    assert rows["outputs/b"][2:4] == ["completed", "20"] and "queue" in rows["outputs/b"]
    assert rows["outputs/c"][2:4] == ["incomplete", "10"]  # the step of its latest checkpoint


def test_runs_sorts_best_first_and_filters_by_a_column_or_any_config_key(runs):
    proc = _typed(runs, "runner.records.runs", "--sort", "precision_test")
    rows = [line.split()[0] for line in proc.stdout.splitlines()[2:-1]]
    assert rows[-1] == "outputs/c"  # no precision: last
    precision = {line.split()[0]: float(line.split()[-3]) for line in proc.stdout.splitlines()[2:4]}
    assert list(precision.values()) == sorted(precision.values(), reverse=True)
    proc = _typed(runs, "runner.records.runs", "--where", "pipeline=queue")
    assert [line.split()[0] for line in proc.stdout.splitlines()[2:-1]] == ["outputs/b"]
    proc = _typed(runs, "runner.records.runs", "--where", "optimizer.lr=0.05", "--where", "status=completed")
    assert [line.split()[0] for line in proc.stdout.splitlines()[2:-1]] == ["outputs/b"]
    bad = _typed(runs, "runner.records.runs", "--sort", "precision_tst")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --sort precision_tst: not a column; the columns")


def test_diff_says_what_differs_in_config_provenance_and_results(runs):
    proc = _typed(runs, "runner.records.diff", "outputs/a", "outputs/b")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "config: " in out and "difference(s)" in out, out
    assert "    pipeline.name: feed_dict -> queue" in out and "    optimizer.lr: 0.01 -> 0.05" in out
    assert "  + pipeline.min_fraction_of_examples_in_queue = 0.4   (only in B)" in out
    assert "provenance: the same" in out  # one machine, one checkout
    assert "results:" in out and "precision_test:" in out
    same = _typed(runs, "runner.records.diff", "outputs/a", "outputs/a")
    assert "config: the same" in same.stdout and "results: the same" in same.stdout
    bad = _typed(runs, "runner.records.diff", "outputs/a", "nowhere")
    assert bad.returncode == 2 and bad.stderr.startswith("error: nowhere is not a run dir")
