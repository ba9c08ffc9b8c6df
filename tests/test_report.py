"""Reports that tell a real difference from seed noise: the statistics against scipy and textbook values, jobs
grouped by the seed (or named keys), failed and interrupted jobs counted and left out, a planted difference found
and an equal one not flagged, plots, HParams session groups read back from TensorBoard over HTTP, and several sweep
dirs reported together from the command line."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from runner.core import results, stats
from runner.sweeps import report
from tests.helpers import ROOT


# ---------------------------------------------------------------------------------------------- the statistics
def test_each_metric_has_one_column_and_one_direction():
    # sweep_objective=wall_time_sec is the report's train_time_sec column, and a time is better low
    assert results.column_of("wall_time_sec") == "train_time_sec"
    assert results.column_of("final_precision.validation") == "precision_validation"
    assert not results.higher_is_better("train_time_sec") and not results.higher_is_better("first_batch_sec")
    assert results.higher_is_better("precision_test") and results.higher_is_better("tf_data_ratio_to_bound")
    assert results.higher_is_better("examples_per_sec")
    columns = [m.column for m in results.metrics(["train", "test"], ["queue"])]
    assert len(columns) == len(set(columns))


def test_a_groups_mean_sd_and_interval_are_students_t():
    s = stats.summarize([1, 2, 3, 4, 5])
    # By hand: sd = sqrt(2.5); t(0.975, 4) = 2.7764; half width = 2.7764 * sqrt(2.5) / sqrt(5) = 1.9632
    assert (s.n, s.mean, s.std) == (5, 3.0, pytest.approx(1.58114, rel=1e-5))
    assert (s.low, s.high) == (pytest.approx(1.0368, abs=1e-4), pytest.approx(4.9632, abs=1e-4))
    sample = np.random.default_rng(0).normal(10, 2, 7)
    s = stats.summarize(sample)
    assert (s.low, s.high) == pytest.approx(scipy_stats.t.interval(0.95, 6, loc=sample.mean(),
                                                                   scale=scipy_stats.sem(sample)))
    one = stats.summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and np.isnan(one.low)  # no interval from one value
    flat = stats.summarize([0.25, 0.25, 0.25])
    assert (flat.std, flat.low, flat.high) == (0.0, 0.25, 0.25)


def test_the_same_seeds_on_both_sides_are_compared_paired_and_others_with_welch():
    a = dict(enumerate([5.1, 4.9, 5.6, 5.8, 6.0]))
    b = dict(enumerate([4.8, 4.7, 5.3, 5.5, 5.6]))
    c = stats.compare(a, b)
    # By hand: differences 0.3 0.2 0.3 0.3 0.4, sd 0.070711, t = 0.3 / (0.070711 / sqrt 5) = 9.487 on 4 df
    assert c.test == stats.PAIRED and c.diff == pytest.approx(0.3)
    assert c.p == pytest.approx(6.9e-4, rel=0.02) and c.half_width == pytest.approx(2.7764 * 0.031623, rel=1e-3)
    assert c.distinguishable and c.needed is None
    welch = stats.compare(a, {k + 10: v for k, v in b.items()})  # other seeds: nothing to pair
    expected = scipy_stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    assert welch.test == stats.WELCH and welch.p == pytest.approx(expected.pvalue)
    assert (welch.low, welch.high) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert not welch.distinguishable  # the seed's spread hides what pairing shows
    assert stats.compare({0: 1.0}, {0: 2.0}) is None  # n=1: no test


def test_the_repeats_a_difference_needs_are_the_t_tests_power():
    # A paired (one-sample) t-test at alpha 0.05 needs 10 pairs for 80% power at an effect of 1 sd, 34 at 0.5 sd
    assert stats._repeats_paired(1.0) == 10 and stats._repeats_paired(0.5) == 34
    c = stats.compare(dict(enumerate([1.0, 1.2, 0.9])), dict(enumerate([0.95, 1.0, 0.97])))
    assert not c.distinguishable and c.needed > 3
    assert stats.hint(c) == (f"n={c.needed} each ({c.needed - 3} more repeats per group) would tell a difference "
                             f"of this size 80% of the time")


# ---------------------------------------------------------------------------------------------- fake sweeps
def _sweep(sweep_dir: Path, jobs: list[tuple[list[str], object]], config: dict | None = None) -> None:
    """Job dirs as a sweep leaves them: overrides, a saved config, and summary.json (a float: the test precision),
    error.txt ("failed") or interrupted.txt ("interrupted")."""
    for i, (overrides, outcome) in enumerate(jobs):
        job = sweep_dir / str(i)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or {"seed": 0}))
        if outcome == "failed":
            (job / "error.txt").write_text("DataError: boom\n")
        elif outcome == "interrupted":
            (job / "interrupted.txt").write_text("SIGTERM at step 5\n")
        else:
            (job / "summary.json").write_text(json.dumps({
                "steps": 100, "examples_per_sec": 1000.0 + i, "wall_time_sec": 5.0,
                "final_precision": {"test": outcome}}))


SEED_EFFECT = [0.02, -0.015, 0.03, -0.025, 0.0]  # what each seed does to either pipeline: the noise pairing removes


def _two_pipelines(shift: float, seeds=range(5), noise: float = 0.002) -> list[tuple[list[str], float]]:
    rng = np.random.default_rng(7)
    return [([f"pipeline={p}", f"seed={s}", "max_steps=100"],
             0.8 + SEED_EFFECT[s % 5] + (shift if p == "tf_data" else 0.0) + rng.normal(0, noise))
            for p in ("queue", "tf_data") for s in seeds]


def _report(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "report.json").read_text())


def test_jobs_that_differ_only_in_the_seed_are_one_group(tmp_path):
    jobs = _two_pipelines(0.0)
    _sweep(tmp_path, jobs)
    report.write(tmp_path)
    groups = {g["label"]: g for g in _report(tmp_path)["groups"]}
    assert list(groups) == ["pipeline=queue", "pipeline=tf_data"]
    for label, first in (("pipeline=queue", 0), ("pipeline=tf_data", 5)):
        values = [jobs[i][1] for i in range(first, first + 5)]
        got = groups[label]["metrics"]["precision_test"]
        expected = stats.summarize(values)
        assert got["n"] == 5 and got["mean"] == pytest.approx(np.mean(values))
        assert (got["std"], got["low"], got["high"]) == pytest.approx((expected.std, expected.low, expected.high))
        assert groups[label]["overrides"] == ["max_steps=100", label]
    text = (tmp_path / "report.md").read_text()
    assert "## Groups: jobs that differ only in seed" in text and "| pipeline=queue | 5 | 0 | 0 | 0 |" in text


def test_jobs_are_grouped_over_the_keys_report_replicate_over_names(tmp_path):
    """dataset.seed (the generated data's) and seed both vary: named in the sweep's report.replicate_over (its saved
    config), every job of a pipeline is one group; with the default [seed], each dataset.seed is a group."""
    jobs = [([f"pipeline={p}", f"seed={s}", f"dataset.seed={d}"], 0.5 + 0.01 * s + 0.001 * d)
            for p in ("queue", "tf_data") for s in range(2) for d in range(2)]
    _sweep(tmp_path / "named", jobs, {"report": {"replicate_over": ["seed", "dataset.seed"]}})
    report.write(tmp_path / "named")
    groups = _report(tmp_path / "named")["groups"]
    assert [(g["label"], g["completed"]) for g in groups] == [("pipeline=queue", 4), ("pipeline=tf_data", 4)]
    _sweep(tmp_path / "default", jobs)
    report.write(tmp_path / "default")
    labels = [g["label"] for g in _report(tmp_path / "default")["groups"]]
    assert labels == ["dataset.seed=0 pipeline=queue", "dataset.seed=1 pipeline=queue",
                      "dataset.seed=0 pipeline=tf_data", "dataset.seed=1 pipeline=tf_data"]


def test_failed_and_interrupted_jobs_are_counted_and_never_averaged_in(tmp_path):
    jobs = [(["pipeline=queue", f"seed={s}"], 0.8 + 0.01 * s) for s in range(3)]
    jobs += [(["pipeline=queue", "seed=3"], "failed"), (["pipeline=queue", "seed=4"], "interrupted")]
    _sweep(tmp_path, jobs)
    report.write(tmp_path)
    (group,) = _report(tmp_path)["groups"]
    assert (group["completed"], group["failed"], group["interrupted"], group["incomplete"]) == (3, 1, 1, 0)
    assert group["metrics"]["precision_test"]["n"] == 3
    assert group["metrics"]["precision_test"]["mean"] == pytest.approx(0.81)
    assert "| all jobs | 3 | 1 | 1 | 0 | 0.810 ± 0.025 (sd 0.010) |" in (tmp_path / "report.md").read_text()


def test_a_planted_difference_is_found_and_an_equal_one_is_not(tmp_path):
    _sweep(tmp_path / "shifted", _two_pipelines(0.01))
    report.write(tmp_path / "shifted")
    (found,) = _report(tmp_path / "shifted")["comparisons"]
    assert (found["group"], found["best"], found["test"]) == ("pipeline=queue", "pipeline=tf_data", "paired t-test")
    assert found["distinguishable"] and found["low"] < -0.01 + 0.005 and found["high"] > -0.01 - 0.005
    assert found["low"] < found["diff"] < found["high"] < 0
    text = (tmp_path / "shifted" / "report.md").read_text()
    assert "- pipeline=queue − pipeline=tf_data: −0.0" in text and "(n=5 each, paired t-test, p=" in text
    assert "): distinguishable" in text

    _sweep(tmp_path / "equal", _two_pipelines(0.0))
    report.write(tmp_path / "equal")
    (same,) = _report(tmp_path / "equal")["comparisons"]
    assert not same["distinguishable"] and same["low"] < 0 < same["high"]
    text = (tmp_path / "equal" / "report.md").read_text()
    assert "): not distinguishable; a difference this small is within the noise (" in text, text

    _sweep(tmp_path / "unpaired", _two_pipelines(0.01, seeds=range(5)) [:5] + [
        (o[:1] + [f"seed={int(o[1].split('=')[1]) + 5}"] + o[2:], v) for o, v in _two_pipelines(0.01)[5:]])
    report.write(tmp_path / "unpaired")
    (welch,) = _report(tmp_path / "unpaired")["comparisons"]
    assert welch["test"] == "Welch's t-test"  # other seeds on each side: the same numbers, unpaired


def test_each_swept_parameter_is_plotted_with_its_groups_intervals(tmp_path):
    jobs = [([f"batch_size={b}", f"pipeline={p}", f"seed={s}"], 0.7 + b / 1000 + 0.01 * s)
            for b in (50, 100) for p in ("queue", "tf_data") for s in range(3)]
    _sweep(tmp_path, jobs)
    report.write(tmp_path)
    for name in ("plot_batch_size.png", "plot_pipeline.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "plot_seed.png").exists()  # a plot against the seed says nothing


def test_a_sweep_without_repeats_says_how_to_get_intervals(tmp_path):
    _sweep(tmp_path, [(["pipeline=queue"], 0.8), (["pipeline=tf_data"], 0.82)])
    report.write(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Each setting ran once" in text and "seed=range(5)" in text and "## Groups" not in text


# ---------------------------------------------------------------------------------------------- TensorBoard
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_groups(logdir: Path) -> list[dict]:
    """The HParams dashboard's session groups, from TensorBoard started as `make tensorboard RUN=DIR` starts it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "runner.viewer", str(logdir), "--port", str(port), "--host",
                             "127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    body = json.dumps({"startIndex": 0, "sliceSize": 100, "colParams": [], "aggregationType": "AGGREGATION_AVG",
                       "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    try:
        deadline = time.time() + 90
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups",
                                                 body.encode(), {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    found = json.loads(response.read())["sessionGroups"]
                if found:
                    return found
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "TensorBoard served no session groups"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow  # a sweep and TensorBoard's hparams
def test_tensorboard_shows_one_session_group_per_group_with_its_mean_and_every_job(tmp_path):
    jobs = _two_pipelines(0.01)
    _sweep(tmp_path, jobs)
    report.write(tmp_path)
    groups = {g["name"]: g for g in _session_groups(tmp_path)}
    assert sorted(groups) == ["pipeline=queue", "pipeline=tf_data"]
    for name, first in (("pipeline=queue", 0), ("pipeline=tf_data", 5)):
        group = groups[name]
        assert sorted(s["name"] for s in group["sessions"]) == sorted(str(i) for i in range(first, first + 5))
        assert group["hparams"] == {"pipeline": name.split("=")[1], "max_steps": 100.0}  # no seed: one setting
        mean = next(m["value"] for m in group["metricValues"] if m["name"]["tag"] == "final/precision_test")
        assert mean == pytest.approx(np.mean([v for _, v in jobs[first:first + 5]]), rel=1e-6)


# ---------------------------------------------------------------------------------------------- the command line
def _report_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_several_sweep_dirs_are_reported_together_grouped_the_same_way(tmp_path):
    """Sweeps run on two days (seeds 0-2, then 3-4): `python -m runner.report A B` in an empty folder writes one
    report into ./report, the repeats of each setting one group across the dirs."""
    jobs = _two_pipelines(0.01)
    _sweep(tmp_path / "monday", [j for j in jobs if int(j[0][1].split("=")[1]) < 3])
    _sweep(tmp_path / "tuesday", [j for j in jobs if int(j[0][1].split("=")[1]) >= 3])
    work = tmp_path / "work"
    work.mkdir()
    proc = _report_cli(str(tmp_path / "monday"), str(tmp_path / "tuesday"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "report/report.md: 10 jobs from 2 sweep dir(s)"
    written = _report(work / "report")
    assert [(g["label"], g["completed"]) for g in written["groups"]] == [("pipeline=queue", 5),
                                                                         ("pipeline=tf_data", 5)]
    assert written["groups"][0]["jobs"] == ["monday/0", "monday/1", "monday/2", "tuesday/0", "tuesday/1"]
    (compared,) = written["comparisons"]
    assert compared["test"] == "paired t-test" and compared["distinguishable"]
    assert "# Report of 2 sweeps:" in (work / "report" / "report.md").read_text()
    assert list((work / "report" / "tuesday" / "3").glob("events.out.tfevents.*.hparams"))  # HParams, per job
    assert not list((tmp_path / "monday" / "0").glob("events.out.tfevents.*"))  # the sweeps are left as they were
    regrouped = _report_cli(str(tmp_path / "monday"), str(tmp_path / "tuesday"), "--replicate-over", "seed,pipeline",
                            "--out", "all", cwd=work)
    assert regrouped.returncode == 0 and [g["completed"] for g in _report(work / "all")["groups"]] == [10]


@pytest.mark.parametrize("args,message", [
    (["nowhere"], "nowhere is not a sweep dir (no job folders with .hydra/overrides.yaml)"),
    (["a", "b", "--out", "a"], "--out a: several sweeps' report goes into a folder of its own"),
    (["a", "a"], "a is given twice (a)"),
    (["a", "./a/"], "is given twice"),
    (["a", "b", "--out", "file/x"], "--out file/x: file is a file, not a folder"),
    (["a", "--compare", "nope"], "--compare nope: no job reports it; the jobs report: examples_per_sec"),
    (["a", "--replicate-over", "nope"], "--replicate-over nope: no job sets it"),
])
def test_the_report_command_refuses_what_is_not_a_sweep(tmp_path, args, message):
    for name in ("a", "b"):
        _sweep(tmp_path / name, [(["seed=0"], 0.5)])
    (tmp_path / "file").write_text("")
    proc = _report_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "report").exists()


def test_a_sweep_dir_holding_another_is_refused(tmp_path):
    _sweep(tmp_path / "a", [(["seed=0"], 0.5)])
    _sweep(tmp_path / "a" / "inner", [(["seed=1"], 0.5)])
    proc = _report_cli("a", "a/inner", cwd=tmp_path)
    assert proc.returncode == 2 and "is in two of the sweep dirs given" in proc.stderr, proc.stderr


@pytest.mark.parametrize("damage", ["empty", "not json", "a link", "steps lots", "a list", "copied job"])
def test_an_odd_job_is_listed_as_unreadable_and_the_report_is_whole(tmp_path, damage):
    """A copied job folder, an empty or non-JSON summary.json, one that is a link, or wrong numbers: the job is
    listed as unreadable (not averaged in), the other jobs are reported, and nothing crashes."""
    _sweep(tmp_path / "s", [([f"seed={i}"], 0.5 + i / 100) for i in range(3)])
    summary = tmp_path / "s" / "1" / "summary.json"
    if damage == "empty":
        summary.write_text("")
    elif damage == "not json":
        summary.write_bytes(b"\x00\xff{")
    elif damage == "a link":
        summary.unlink()
        summary.symlink_to(tmp_path / "s" / "0" / "summary.json")
    elif damage == "steps lots":
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "steps": "lots"}))
    elif damage == "a list":
        summary.write_text("[1, 2]")
    else:
        shutil.copytree(tmp_path / "s" / "2", tmp_path / "s" / "0_backup")
    proc = _report_cli("s", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = {r["job"]: r for r in _report(tmp_path / "s")["jobs"]}
    text = (tmp_path / "s" / "report.md").read_text()
    if damage == "copied job":
        assert list(rows) == ["0", "1", "2", "0_backup"] and {r["status"] for r in rows.values()} == {"completed"}
    else:
        assert rows["1"]["status"] == "unreadable" and "summary.json" in rows["1"]["error"]
        assert [rows[j]["status"] for j in ("0", "2")] == ["completed", "completed"]
        assert "1 unreadable (listed below)" in text


def test_a_huge_or_empty_error_file_is_read_from_its_end(tmp_path):
    _sweep(tmp_path / "s", [(["seed=0"], "failed"), (["seed=1"], "failed")])
    with (tmp_path / "s" / "0" / "error.txt").open("w") as f:
        f.write("x" * 50_000_000 + "\nDataError: the last line\n")
    (tmp_path / "s" / "1" / "error.txt").write_text("")
    rows = report.write(tmp_path / "s")
    assert [r["error"] for r in rows] == ["DataError: the last line", "(no message)"]


def test_the_report_replaces_links_never_writing_through_them(tmp_path):
    _sweep(tmp_path / "s", [(["seed=0"], 0.5)])
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    for name in ("report.md", "report.csv"):
        (tmp_path / "s" / name).symlink_to(victim)
    report.write(tmp_path / "s")
    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "s" / "report.md").is_symlink() and "# Sweep report" in (
        tmp_path / "s" / "report.md").read_text()


def test_a_full_disk_is_one_line_and_leaves_no_half_written_report(tmp_path):
    _sweep(tmp_path / "s", [([f"seed={i}"], 0.5) for i in range(3)])
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200)); "
            "from runner.sweeps.report import main; main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, "s", "--out", "out"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: cannot write out/report.") and "Traceback" not in proc.stderr
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix in (".md", ".csv", ".json") and
                p.stat().st_size == 0]


def test_a_failed_seed_leaves_the_other_seeds_paired():
    a = dict(enumerate([5.1, 4.9, 5.6, 5.8, 6.0]))
    b = dict(enumerate([4.8, 4.7, 5.3, 5.5]))  # seed 4's job failed
    c = stats.compare(a, b)
    expected = scipy_stats.ttest_rel([5.1, 4.9, 5.6, 5.8], [4.8, 4.7, 5.3, 5.5])
    assert c.test == stats.PAIRED and (c.n_a, c.n_b) == (4, 4) and c.p == pytest.approx(expected.pvalue)
    assert stats.compare(a, {0: 4.8, 7: 4.7, 8: 5.3, 9: 5.5}).test == stats.WELCH  # one seed in common: unpaired


def test_the_plot_puts_each_dot_on_its_value_marks_failures_and_uses_a_log_axis_for_doubling_steps(tmp_path):
    """Batch sizes 50/100 drawn at 50 and 100 exactly (not beside them), a failed job marked, doubling steps on a
    log axis, and a y range no narrower than a tenth of the values."""
    import matplotlib.pyplot as plt

    from runner.sweeps import groups as grouping
    from runner.sweeps import plots

    _sweep(tmp_path / "s", [(["batch_size=50", f"seed={i}"], 0.9 + i / 1000) for i in range(3)]
           + [(["batch_size=100", "seed=0"], "failed"), (["batch_size=100", "seed=1"], 0.901),
              (["batch_size=100", "seed=2"], 0.902)])
    rows = report.collect(tmp_path / "s")
    fig = plots.figure(grouping.group(rows, ["seed"]), "batch_size", "precision_test")
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection

    xs = sorted({round(float(x), 9) for c in ax.collections if isinstance(c, PathCollection)
                 for x, _ in c.get_offsets()})
    assert xs == [50.0, 100.0]
    assert any("failed or interrupted (1)" == t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_xscale() == "log"
    low, high = ax.get_ylim()
    assert high - low >= 0.09  # values of ~0.9 spread by 0.002 do not fill the plot
    plt.close(fig)


def test_a_bench_sweeps_jobs_are_found_in_their_mode_folder(tmp_path):
    """`-m mode=bench ...`: Hydra keeps each job's config in .hydra/bench/; the report finds and reads them."""
    for i, ratio in enumerate((0.9, 0.8)):
        job = tmp_path / "s" / str(i)
        (job / ".hydra" / "bench").mkdir(parents=True)
        (job / ".hydra" / "bench" / "overrides.yaml").write_text(yaml.safe_dump(["mode=bench", f"batch_size={i + 1}"]))
        (job / ".hydra" / "bench" / "config.yaml").write_text(yaml.safe_dump({"seed": 0}))
        (job / "bench.json").write_text(json.dumps({"bound_examples_per_sec": 1000.0, "wall_time_sec": 3.0,
                                                    "pipelines": {"queue": {"ratio_to_bound": ratio}}}))
    proc = _report_cli("s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 jobs, 2 completed, 0 failed" in (tmp_path / "s" / "report.md").read_text()
    assert [r["queue_ratio_to_bound"] for r in _report(tmp_path / "s")["jobs"]] == [0.9, 0.8]


def test_a_planted_running_marker_names_no_process(tmp_path):
    """A marker in the sweep's .running/ that this sweep did not write (or whose pid another process now has) is
    not signalled."""
    import socket as sockets

    from runner.sweeps import sweep

    running = tmp_path / ".running"
    running.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (running / f"{sockets.gethostname()}-{sleeper.pid}").write_text("")
        (running / f"{sockets.gethostname()}-{os.getpid()}").write_text("0 deadbeef\n")
        assert [sweep._local_pid(m) for m in sorted(running.iterdir())] == [None, None]
        (running / f"{sockets.gethostname()}-{sleeper.pid}").write_text(sweep._identity(sleeper.pid))
        assert sweep._local_pid(running / f"{sockets.gethostname()}-{sleeper.pid}") == sleeper.pid
        sweep.clear_stale(tmp_path)
        assert sorted(m.name for m in running.iterdir()) == [f"{sockets.gethostname()}-{sleeper.pid}"]
    finally:
        sleeper.kill()
