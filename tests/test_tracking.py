"""tracking=mlflow and ``python -m runner.records.track``: runs, resumes, evals and sweeps read back through MLflow's
own client, from the default SQLite store as typed and (engines tier) from a real ``mlflow server`` on 127.0.0.1, one
killed mid-run, and the UI of ``make mlflow`` in headless Chromium."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.cli.app import run
from runner.core.errors import ConfigError
from runner.core.system import free_ports
from runner.run.validate import validate
from tests.helpers import ROOT, TINY, compose, noise, one_complete_sweep, run_cli, user_env

pytest.importorskip("mlflow", reason="the mlflow extra (make install includes it)")

SHORT = [*TINY, "max_steps=40", "log_every=10", "checkpoint_every=20", "eval_splits=[validation,test]"]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str = "runner") -> list:
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    return client.search_runs([found.experiment_id], order_by=["attributes.run_name ASC"])


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in _client(uri).get_metric_history(run_id, key))


def _track(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.records.track", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=user_env())


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "tracking:" in line]


def _artifacts(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in _client(uri).list_artifacts(run_id, folder)}


def test_a_run_as_typed_is_an_mlflow_run_in_the_sqlite_store_here(tmp_path, tiny_digits):
    proc = run_cli("tracking=mlflow", *SHORT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not _warnings(proc.stdout + proc.stderr) and not noise(proc.stdout + proc.stderr)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (mlflow_run,) = _runs(uri)
    run_dir = next(tmp_path.glob("outputs/*/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    info, data = mlflow_run.info, mlflow_run.data
    assert info.status == "FINISHED" and info.run_name == "/".join(run_dir.parts[-2:])
    assert data.params["optimizer.lr"] == "0.01" and data.params["max_steps"] == "40"
    assert data.params["eval_splits"] == '["validation", "test"]' and data.params["tracking.name"] == "mlflow"
    assert {k: data.tags[k] for k in ("dataset", "pipeline", "model", "hardware", "mode", "status")} == {
        "dataset": "digits", "pipeline": "feed_dict", "model": "mlp", "hardware": "auto", "mode": "train",
        "status": "completed"}
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert data.tags["git_sha"] == provenance["git"]["sha"] and data.tags["host"] == provenance["host"]
    assert data.tags["run_dir"] == str(run_dir)
    assert _steps(uri, info.run_id, "loss") == [10, 20, 30, 40]
    assert _steps(uri, info.run_id, "learning_rate") == [10, 20, 30, 40]
    assert _steps(uri, info.run_id, "precision_test") == [20, 40]
    assert data.metrics["final_precision_test"] == summary["final_precision"]["test"]
    assert data.metrics["final_steps"] == 40
    assert {"summary.json", "provenance.json", ".hydra"} <= _artifacts(uri, info.run_id)
    assert ".hydra/config.yaml" in _artifacts(uri, info.run_id, ".hydra")
    assert (tmp_path / "mlartifacts").is_dir()  # beside the store
    again = _track(tmp_path)  # nothing left to log: matched, not duplicated
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "1 run(s): 0 logged, 1 already there (brought up to date)"
    assert len(_runs(uri)) == 1 and _steps(uri, info.run_id, "loss") == [10, 20, 30, 40]


def test_a_resumed_run_continues_its_mlflow_run_and_an_eval_adds_to_it(tmp_path, tiny_digits):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    tracking = ["tracking=mlflow", f"tracking.uri={uri}"]
    run_dir = tmp_path / "run"
    run(compose(*SHORT, *tracking, "max_steps=20"), str(run_dir))
    (first,) = _runs(uri)
    run(compose(*SHORT, *tracking, "max_steps=40"), str(run_dir))
    (resumed,) = _runs(uri)
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    assert _steps(uri, first.info.run_id, "loss") == [10, 20, 30, 40]  # each step once
    assert _steps(uri, first.info.run_id, "final_steps") == [20, 40]
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(compose(*SHORT, *tracking, "max_steps=20"), run_dir / ".hydra" / "config.yaml")  # as Hydra does
    overrides = ["mode=eval", f"run_dir={run_dir}", "eval_splits=[test]", *tracking]
    run(compose(*overrides), str(run_dir), overrides)
    (evaluated,) = _runs(uri)
    assert evaluated.info.run_id == first.info.run_id
    eval_json = json.loads((run_dir / "eval.json").read_text())
    assert evaluated.data.metrics["eval_precision_test"] == eval_json["results"]["test"]["precision"]
    assert _steps(uri, first.info.run_id, "eval_precision_test") == [40]


@pytest.mark.slow  # make test-engines backfills after a real server's kill; this one moves the dir and loses the id
def test_track_backfills_runs_made_without_tracking_once_even_moved(tmp_path, tiny_digits):
    run(compose(*SHORT), str(tmp_path / "outputs" / "a"))
    run(compose(*SHORT, "max_steps=20", "optimizer.lr=0.05"), str(tmp_path / "outputs" / "b"))
    first = _track(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "2 run(s): 2 logged, 0 already there (brought up to date)"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    a, b = _runs(uri)
    assert a.info.status == b.info.status == "FINISHED" and b.data.params["optimizer.lr"] == "0.05"
    assert _steps(uri, a.info.run_id, "loss") == [10, 20, 30, 40] and _steps(uri, b.info.run_id, "loss") == [10, 20]
    # moved, and its tracking.json forgetting the store: the run is matched by the uid its MLflow run carries
    shutil.move(tmp_path / "outputs" / "a", tmp_path / "outputs" / "moved")
    state = json.loads((tmp_path / "outputs" / "moved" / "tracking.json").read_text())
    (tmp_path / "outputs" / "moved" / "tracking.json").write_text(json.dumps({"uid": state["uid"], "runs": {}}))
    again = _track(tmp_path, "outputs")
    assert again.stdout.splitlines()[-1] == "2 run(s): 0 logged, 2 already there (brought up to date)", again.stdout
    runs = {r.info.run_id: r for r in _runs(uri)}
    assert len(runs) == 2 and _steps(uri, a.info.run_id, "loss") == [10, 20, 30, 40]
    assert runs[a.info.run_id].data.tags["run_dir"] == str(tmp_path / "outputs" / "moved")


def test_a_store_that_does_not_answer_is_one_warning_and_the_run_finishes(tmp_path, tiny_digits):
    (port,) = free_ports(1)  # nothing listens there
    proc = run_cli("tracking=mlflow", f"tracking.uri=http://127.0.0.1:{port}", *SHORT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = _warnings(proc.stdout + proc.stderr)
    assert len(warned) == 1 and f"127.0.0.1:{port}" in warned[0], warned
    assert "python -m runner.records.track" in warned[0], warned
    assert len(list(tmp_path.glob("outputs/*/*/summary.json"))) == 1


@pytest.mark.parametrize("uri", ["localhost:5000", "ftp://host/x", "mlruns"])
def test_a_tracking_uri_that_is_no_store_is_refused_naming_it(uri):
    with pytest.raises(ConfigError, match=rf"tracking.uri={uri} is not a tracking store's URI; give http://HOST:PORT"):
        validate(compose("tracking=mlflow", f"tracking.uri={uri}"))


def test_tracking_mlflow_without_mlflow_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"tracking=mlflow needs MLflow, which is not installed: pip install -e "
                                          r"'.\[mlflow\]'"):
        validate(compose("tracking=mlflow"))


def test_track_names_a_store_that_does_not_answer_and_a_bad_path(tmp_path):
    (tmp_path / "outputs" / "x" / ".hydra").mkdir(parents=True)
    (tmp_path / "outputs" / "x" / ".hydra" / "config.yaml").write_text("mode: train\n")
    (port,) = free_ports(1)
    down = _track(tmp_path, "--uri", f"http://127.0.0.1:{port}")
    assert down.returncode == 2 and down.stderr.startswith(f"error: http://127.0.0.1:{port}: ")
    assert "nothing is lost: run this again when the store answers" in down.stderr
    assert len(down.stderr.splitlines()) == 1
    bad = _track(tmp_path, "nowhere")
    assert bad.returncode == 2 and bad.stderr == "error: nowhere: not a folder; give run dirs, sweep dirs or folders " \
                                                 "holding them\n"
    uri = _track(tmp_path, "--uri", "mlruns")
    assert uri.returncode == 2 and uri.stderr.startswith("error: --uri mlruns is not a tracking store's URI")


# ---------------------------------------------------------------------------------------------- a real server
def _start_server(folder: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1, its store and artifacts in ``folder``, as its docs start it (without its job
    runner for GenAI jobs: seven processes this machine's tests need not carry); up once it answers /health."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{folder / 'server.db'}", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=user_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}))
    _wait_for(f"http://127.0.0.1:{port}/health", proc)
    return proc


def _wait_for(url: str, proc: subprocess.Popen, secs: float = 90) -> None:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server ended with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {secs} s")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server_sweep(tmp_path_factory, tiny_digits):
    """A sweep as typed, logged to a real ``mlflow server``: 2 learning rates x 2 seeds; yields (cwd, store URI of
    the server, the server's folder)."""
    folder, cwd = tmp_path_factory.mktemp("mlflow_server"), tmp_path_factory.mktemp("server_sweep")
    (port,) = free_ports(1)
    server = _start_server(folder, port)
    try:
        uri = f"http://127.0.0.1:{port}"
        proc = run_cli("-m", "tracking=mlflow", f"tracking.uri={uri}", "optimizer.lr=0.05,0.2", "seed=range(2)",
                       *SHORT, cwd=cwd, timeout=300)
        assert not _warnings(proc.stdout + proc.stderr)
        one_complete_sweep(cwd, 4, proc)
        yield cwd, uri, folder
    finally:
        _stop(server)


@pytest.mark.slow
@pytest.mark.engines
def test_a_sweep_on_a_real_server_is_a_parent_run_with_a_child_per_job(server_sweep):
    cwd, uri, _folder = server_sweep
    sweep_dir = next(cwd.glob("multirun/*"))
    runs = _runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == sweep_dir.name and parent.info.status == "FINISHED" and len(runs) == 5
    assert sorted(c.info.run_name for c in children) == [f"{sweep_dir.name}/{n}" for n in range(4)]
    assert {"report.md", "report.json", "report.csv", "multirun.yaml"} <= _artifacts(uri, parent.info.run_id)
    assert "optimizer.lr=0.05,0.2" in parent.data.params["sweep"]
    by_job = {c.info.run_name.rsplit("/", 1)[1]: c for c in children}
    for job, child in by_job.items():
        config = json.loads((sweep_dir / job / "summary.json").read_text())["config"]
        assert child.data.params["optimizer.lr"] == str(config["optimizer"]["lr"])
        assert child.data.params["seed"] == str(config["seed"]) and child.info.status == "FINISHED"
        assert _steps(uri, child.info.run_id, "loss") == [10, 20, 30, 40]
        assert "summary.json" in _artifacts(uri, child.info.run_id)
    groups: dict[str, set[str]] = {}
    for child in children:  # the seeds of one learning rate share a group
        groups.setdefault(child.data.tags["group"], set()).add(child.data.params["optimizer.lr"])
    assert sorted(map(sorted, groups.values())) == [["0.05"], ["0.2"]]
    assert all(len([c for c in children if c.data.tags["group"] == g]) == 2 for g in groups)


@pytest.mark.slow
@pytest.mark.engines
def test_a_server_killed_mid_run_costs_one_warning_and_track_fills_the_gap(tmp_path_factory, tiny_digits):
    folder, cwd = tmp_path_factory.mktemp("killed_server"), tmp_path_factory.mktemp("killed_run")
    (port,) = free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(folder, port)
    args = ["tracking=mlflow", f"tracking.uri={uri}", *TINY, "max_steps=3000", "log_every=50", "checkpoint_every=1000",
            "eval_splits=[test]"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=user_env())
    try:
        deadline = time.monotonic() + 120
        while not (_runs_there(uri) and proc.poll() is None):  # the run is in the store, and still training
            assert time.monotonic() < deadline and proc.poll() is None, "the run ended before it was tracked"
            time.sleep(0.2)
        _stop(server, signal.SIGKILL)
        out = proc.communicate(timeout=300)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:]
    warned = _warnings(out)
    assert len(warned) == 1 and "python -m runner.records.track" in warned[0], warned
    run_dir = next(cwd.glob("outputs/*/*"))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    server = _start_server(folder, port)  # back, on the same store
    try:
        (partial,) = _runs(uri)
        assert partial.info.status == "RUNNING"  # what the store had when it went down
        filled = _track(cwd)  # the run's own tracking.uri: the server
        assert filled.returncode == 0, filled.stderr
        assert filled.stdout.splitlines()[-1] == "1 run(s): 0 logged, 1 already there (brought up to date)"
        (done,) = _runs(uri)
        assert done.info.run_id == partial.info.run_id and done.info.status == "FINISHED"
        losses = _steps(uri, done.info.run_id, "loss")
        assert losses == list(range(50, 3001, 50)) and len(losses) + 3 == len(lines)  # + 3 evals; none twice
        assert "summary.json" in _artifacts(uri, done.info.run_id)
        assert _track(cwd).stdout.splitlines()[-1].endswith("0 logged, 1 already there (brought up to date)")
        assert _steps(uri, done.info.run_id, "loss") == losses
    finally:
        _stop(server)


def _runs_there(uri: str) -> bool:
    try:
        found = _client(uri).get_experiment_by_name("runner")
        return bool(found and _client(uri).search_runs([found.experiment_id]))
    except Exception:  # noqa: BLE001  the server between answers
        return False


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.engines
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_make_mlflow_shows_the_runs_in_a_real_browser(server_sweep, tmp_path_factory):
    cwd, _uri, folder = server_sweep
    (port,) = free_ports(1)
    ui = subprocess.Popen(["make", "-s", "mlflow", f"STORE=sqlite:///{folder / 'server.db'}", f"PORT={port}"],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", ui)
        experiment = _client(f"sqlite:///{folder / 'server.db'}").get_experiment_by_name("runner").experiment_id
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs"
        browser = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--virtual-time-budget=20000", "--window-size=1400,900"]
        dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path_factory.getbasetemp() / "mlflow_ui_runs.png"
        subprocess.run([*browser, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    finally:
        _stop(ui)
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style).*?</\1>", "", dom, flags=re.S)).split())
    sweep = next(cwd.glob("multirun/*")).name
    assert "Training runs" in text and sweep in text, text[:3000]
    assert "5 matching runs" in text, text[:3000]  # the parent and its 4 jobs
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


def _readme_line(needle: str) -> str:
    section = (ROOT / "README.md").read_text().split("## Tracking and comparing runs")[1].split("\n## ")[0]
    return next(line.split(" #", 1)[0].strip() for line in section.splitlines() if needle in line)


@pytest.mark.slow
@pytest.mark.engines
def test_the_readme_sweep_as_typed_is_a_parent_and_its_jobs_in_the_default_store(tmp_path, tiny_digits):
    args = shlex.split(_readme_line("-m tracking=mlflow"))[3:]  # python -m runner -m tracking=mlflow ...
    proc = run_cli(*args, *SHORT, cwd=tmp_path, timeout=600)
    assert not _warnings(proc.stdout + proc.stderr)
    sweep_dir = one_complete_sweep(tmp_path, 6, proc)
    runs = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == sweep_dir.name and len(children) == 6 and len(runs) == 7
    groups = sorted(sorted(c.data.params["seed"] for c in children if c.data.tags["group"] == g)
                    for g in {c.data.tags["group"] for c in children})
    assert groups == [["0", "1", "2"], ["0", "1", "2"]]  # each learning rate's three seeds


@pytest.mark.slow
def test_bench_and_tune_are_runs_of_their_own_with_their_tables(tmp_path, tiny_digits):
    quick = [*TINY, "tracking=mlflow", "bench.warmup_steps=2", "bench.windows=2", "bench.steps_per_window=5",
             "bench.stages=false"]
    bench = run_cli("mode=bench", "bench.pipelines=[feed_dict]", *quick, cwd=tmp_path, timeout=300)
    tune = run_cli("mode=tune", "tune.budget_secs=15", "tune.confirm_rounds=0", "tune.name=tuned_here", *quick,
                   cwd=tmp_path, timeout=300)
    assert bench.returncode == 0 and tune.returncode == 0, bench.stderr[-2000:] + tune.stderr[-2000:]
    assert not _warnings(bench.stdout + bench.stderr + tune.stdout + tune.stderr)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    by_mode = {r.data.tags["mode"]: r for r in _runs(uri)}
    assert set(by_mode) == {"bench", "tune"} and {r.info.status for r in by_mode.values()} == {"FINISHED"}
    measured = json.loads(next(tmp_path.glob("outputs/*/*/bench.json")).read_text())
    assert by_mode["bench"].data.metrics["bound_examples_per_sec"] == measured["bound_examples_per_sec"]
    assert {"bench.json", "bench.txt"} <= _artifacts(uri, by_mode["bench"].info.run_id)
    tuned = json.loads(next(tmp_path.glob("outputs/*/*/tune.json")).read_text())["feed_dict"]
    trials = _steps(uri, by_mode["tune"].info.run_id, "tune_examples_per_sec_feed_dict")
    assert trials == [i for i, t in enumerate(tuned["trials"]) if t.get("examples_per_sec") is not None]
    assert {"tune.json", "tune.txt", "tuned_here.yaml"} <= _artifacts(uri, by_mode["tune"].info.run_id)


@pytest.mark.slow  # 8 trials
def test_a_searchs_jobs_carry_their_trials_number_and_state(tmp_path):
    from tests.test_search import PRUNED_SEARCH, study_of

    proc = run_cli(*PRUNED_SEARCH, "tracking=mlflow", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0 and not _warnings(proc.stdout + proc.stderr), proc.stdout[-3000:]
    sweep = next(tmp_path.glob("multirun/*"))
    states = {str(t.number): t.state.name for t in study_of(sweep).trials}
    assert "PRUNED" in states.values() and "COMPLETE" in states.values()
    children = [r for r in _runs(f"sqlite:///{tmp_path / 'mlflow.db'}") if "trial" in r.data.tags]
    assert {r.data.tags["trial"]: r.data.tags["trial_state"] for r in children} == states
    assert all(r.info.status == ("KILLED" if states[r.data.tags["trial"]] == "PRUNED" else "FINISHED")
               for r in children)
