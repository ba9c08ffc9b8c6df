"""MLflow tracking: each run dir mirrored into an MLflow run, while it runs and afterwards.

The run dir is the record; its MLflow run is a copy that can always be made again from it. One function,
:func:`sync`, copies what the store lacks (the config as params, tags, the lines of metrics.jsonl it has not had,
eval.json, the summary or bench.json, the artifacts, the status), so logging while a run trains (a thread of the run,
:func:`tracked`) and logging afterwards (``python -m runner.records.track``) are the same code, and neither duplicates:

- ``tracking.json`` in the run dir holds its uid and its MLflow run in each store it was logged to; the MLflow run
  carries the uid as a tag, so a run dir whose tracking.json lost the run (a kill between the two writes) is
  still matched;
- how many lines of metrics.jsonl the run has is a tag, written in the same request as their metrics, and each of
  the other files' last logged version is a tag too.

A sweep dir is a parent run (its report's files as artifacts) and its jobs are its children.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.config.hydra import flat
from runner.core.files import write_json
from runner.core.results import BENCH, SUMMARY, columns
from runner.records.rundirs import STUDY_FILE, RunDir, find, read, read_json

log = logging.getLogger("runner")

STATE = "tracking.json"  # in a run or sweep dir: {"uid": ..., "runs": {store URI: MLflow run id}}
DB = "mlflow.db"  # the default store, in the folder the command runs in
ARTIFACTS = "mlartifacts"  # the default store's artifacts, beside it
SWEEP = "multirun.yaml"  # Hydra's record of a sweep, in its dir
UID, LINES = "runner_uid", "runner_metrics_lines"  # tags: the run dir's identity; metrics.jsonl's lines logged
RUN_FILES = (".hydra/config.yaml", "summary.json", "provenance.json", "eval.json", "bench.json", "bench.txt",
             "tune.json", "tune.txt", "history.jsonl")
SWEEP_FILES = ("report.md", "report.json", "report.csv", STUDY_FILE, SWEEP)
# runner's status of a run dir -> MLflow's; and a search's trial state
STATUS = {"completed": "FINISHED", "pruned": "KILLED", "interrupted": "KILLED", "failed": "FAILED",
          "incomplete": "KILLED"}
TRIAL_STATE = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


class StoreError(Exception):
    """The tracking store could not be reached or refused a request."""


def store_uri(uri: str | None, cwd: str | Path | None = None) -> str:
    """tracking.uri, or the default store: mlflow.db in ``cwd`` (the folder the command runs in)."""
    return uri or f"sqlite:///{Path(cwd or os.getcwd()).resolve() / DB}"


@dataclass
class Target:
    """A store and an experiment in it, reached through MLflow's client."""

    uri: str
    experiment: str
    client: Any = None
    experiment_id: str = ""
    made: set[str] = field(default_factory=set)  # the runs this target made (the others were found)

    @classmethod
    def open(cls, uri: str, experiment: str) -> Target:
        """Connects (raises StoreError naming the store when it cannot) and finds or makes the experiment."""
        client = _client(uri)
        try:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                location = None
                if uri.startswith("sqlite:///"):
                    location = (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS).resolve().as_uri()
                try:
                    experiment_id = client.create_experiment(experiment, artifact_location=location)
                except Exception:  # noqa: BLE001  made meanwhile by another job of the sweep
                    found = client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                if found.lifecycle_stage == "deleted":
                    client.restore_experiment(found.experiment_id)
                experiment_id = found.experiment_id
        except Exception as err:  # noqa: BLE001  MLflow's, requests', SQLAlchemy's errors: one line
            raise StoreError(f"{_shown(uri)}: {_brief(err)}") from None
        return cls(uri, experiment, client, experiment_id)


def _shown(uri: str) -> str:
    """The store's URI as said in messages: a database URL without its user and password."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri


# What a store's failures come down to, said in a few words instead of the HTTP client's whole exception
_CAUSES = (("Connection refused", "nothing answers there (connection refused)"),
           ("Read timed out", "it did not answer in time"), ("timed out", "it did not answer in time"),
           ("Name or service not known", "the host name is not known"),
           ("database is locked", "the SQLite file is locked by another writer"))


def _brief(err: Exception) -> str:
    text = str(err).strip()
    said = next((cause for marker, cause in _CAUSES if marker in text), None)
    if said is not None:
        return said
    lines = text.splitlines()
    return (lines[0] if lines else type(err).__name__)[:300]


def _client(uri: str):
    """MLflow's client for ``uri``, quiet, and quick to give up on a server that does not answer (MLflow's own
    defaults retry for minutes)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------------------------------------- identity
def _state(path: Path) -> dict:
    return read_json(path / STATE) or {}


def _uid(path: Path) -> str:
    """The dir's uid, made and written on first use (before any MLflow run carries it)."""
    state = _state(path)
    if not isinstance(state.get("uid"), str):
        state = {"uid": uuid.uuid4().hex, "runs": {}}
        write_json(path / STATE, state)
    return state["uid"]


def logged_as(path: Path, uri: str) -> str | None:
    """The MLflow run the dir was logged as in the store at ``uri``, by its tracking.json."""
    return _state(path).get("runs", {}).get(uri)


def _remember(path: Path, uri: str, run_id: str) -> None:
    state = _state(path)
    state.setdefault("runs", {})[uri] = run_id
    write_json(path / STATE, state)


def _found(target: Target, path: Path):
    """The MLflow run of this dir in the target's store: the one tracking.json names, else the one tagged with the
    dir's uid; None if neither (or it was deleted)."""
    client = target.client
    run_id = logged_as(path, target.uri)
    if run_id:
        with contextlib.suppress(Exception):  # deleted from the store, or a store made again
            run = client.get_run(run_id)
            if run.info.lifecycle_stage != "deleted":
                return run
    uid = _state(path).get("uid")
    if uid:
        found = client.search_runs([target.experiment_id], filter_string=f"tags.`{UID}` = '{uid}'", max_results=1)
        if found:
            _remember(path, target.uri, found[0].info.run_id)
            return found[0]
    return None


def run_name(path: Path) -> str:
    """outputs/2026-12-04/10-00-00 -> 2026-12-04/10-00-00; multirun/sweep-ab12/3 -> sweep-ab12/3."""
    return "/".join(path.resolve().parts[-2:])


def experiment_of(path: Path, config: dict) -> str:
    """The experiment a dir logs to: its tracking.experiment, else the experiment it ran (experiment=NAME, in
    Hydra's record of the run), else ``runner``."""
    named = (config.get("tracking") or {}).get("experiment")
    if named:
        return str(named)
    for record in (path / ".hydra" / "hydra.yaml", *sorted(path.glob(".hydra/*/hydra.yaml")), path / SWEEP):
        try:
            hydra = (yaml.safe_load(record.read_text()) or {}).get("hydra") or {}
        except (OSError, yaml.YAMLError):
            continue
        chosen = ((hydra.get("runtime") or {}).get("choices") or {}).get("experiment")
        if chosen:
            return str(chosen)
    return "runner"


# ---------------------------------------------------------------------------------------------- mirroring
def _metric(key: str, value: Any, step: int, when: float):
    from mlflow.entities import Metric

    return Metric(key, float(value), int(when * 1000), int(step))


def _line_metrics(line: dict) -> list:
    """A metrics.jsonl line's metrics: an eval's precision as precision_SPLIT, a progress line's numbers."""
    step, when = line.get("step", 0), line.get("time", time.time())
    if "split" in line:
        return [_metric(f"precision_{line['split']}", line["precision"], step, when)] if "precision" in line else []
    return [_metric(k, v, step, when) for k, v in line.items()
            if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)]


def _lines(path: Path) -> list[dict]:
    """metrics.jsonl's whole lines (one being written is left for the next time); one that does not parse counts
    as a line without metrics."""
    try:
        text = (path / "metrics.jsonl").read_text()
    except OSError:
        return []
    out = []
    for line in text.split("\n")[:-1]:
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = {}
        out.append(parsed if isinstance(parsed, dict) else {})
    return out


def _log(target: Target, run_id: str, metrics: list = (), params: dict | None = None, tags: dict | None = None,
         ) -> None:
    """Params and tags in the batches MLflow takes (100 a request; logging one again is harmless), then the metrics
    (at most 1,000) with the last tags in one request, so a cursor tag is written with the metrics it counts."""
    from mlflow.entities import Param, RunTag

    params_list = [Param(k, v) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    while len(params_list) > 100:
        target.client.log_batch(run_id, params=params_list[:100])
        params_list = params_list[100:]
    while len(tag_list) > 100:
        target.client.log_batch(run_id, tags=tag_list[:100])
        tag_list = tag_list[100:]
    if metrics or params_list or tag_list:
        target.client.log_batch(run_id, metrics=list(metrics), params=params_list, tags=tag_list)


def _log_lines(target: Target, run_id: str, lines: list[dict], done: int) -> None:
    """metrics.jsonl's lines after the first ``done``, in requests of at most 1,000 metrics, each with the count of
    lines it brings the run to."""
    batch: list = []
    for number, line in enumerate(lines[done:], start=done + 1):
        batch += _line_metrics(line)
        if len(batch) >= 990 or number == len(lines):
            _log(target, run_id, batch, tags={LINES: number})
            batch = []


def _param(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]  # MLflow's longest param value


def _fingerprint(files: list[Path]) -> str:
    """Which version of these files was logged: their names, sizes and times."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]
    return hashlib.sha1(json.dumps(stats).encode()).hexdigest()[:16]


def _tags(rd: RunDir, path: Path) -> dict[str, str]:
    config, provenance = rd.config, rd.provenance
    tags = {"mode": config.get("mode"), "run_dir": str(path.resolve()), "status": rd.status}
    for group in ("dataset", "pipeline", "model", "hardware", "optimizer"):
        name = (config.get(group) or {}).get("name")
        if name:
            tags[group] = name
    git = provenance.get("git") or {}
    if git.get("sha"):
        tags["git_sha"] = git["sha"]
        tags["mlflow.source.git.commit"] = git["sha"]
    if git.get("dirty") is not None:
        tags["git_dirty"] = str(git["dirty"]).lower()
    if provenance.get("host"):
        tags["host"] = provenance["host"]
    return {k: str(v) for k, v in tags.items() if v is not None}


def _file_metrics(rd: RunDir, path: Path, have: dict[str, str]) -> tuple[list, dict[str, str]]:
    """The metrics of the dir's result files the run has not had (or had in an earlier version), and the tags that
    record their versions: the summary's as final_COLUMN, bench.json's as its report columns, eval.json's as
    eval_precision_SPLIT at the evaluated step, tune.json's trials as tune_examples_per_sec by trial."""
    out: list = []
    tags: dict[str, str] = {}
    results = {"summary.json": rd.summary, "bench.json": rd.bench, "eval.json": read_json(path / "eval.json"),
               "tune.json": rd.tune}
    for name, result in results.items():
        if result is None:
            continue
        version = _fingerprint([path / name])
        if have.get(f"runner_logged.{name}") == version:
            continue
        tags[f"runner_logged.{name}"] = version
        when = (path / name).stat().st_mtime
        if name == "summary.json":
            out += [_metric(f"final_{k}", v, result.get("steps", 0), when)
                    for k, v in columns(result, SUMMARY).items() if isinstance(v, (int, float))]
        elif name == "bench.json":
            out += [_metric(k, v, 0, when) for k, v in columns(result, BENCH).items() if isinstance(v, (int, float))]
        elif name == "eval.json":
            out += [_metric(f"eval_precision_{split}", r["precision"], result.get("step", 0), result.get("time", when))
                    for split, r in (result.get("results") or {}).items() if "precision" in r]
        else:
            out += [_metric(f"tune_examples_per_sec_{tuned}", t["examples_per_sec"], i, when)
                    for tuned, search in result.items() if isinstance(search, dict)
                    for i, t in enumerate(search.get("trials") or [])
                    if isinstance(t, dict) and isinstance(t.get("examples_per_sec"), (int, float))]
    return out, tags


def _artifacts(target: Target, run_id: str, path: Path, names: tuple[str, ...], have: dict, extra: list[Path] = ()
               ) -> dict[str, str]:
    """The dir's files among ``names`` (and ``extra``) logged as artifacts when they changed since last time; the tag
    that records it."""
    files = [p for p in [*(path / n for n in names), *extra] if p.is_file()]
    version = _fingerprint(files)
    if not files or have.get("runner_logged.artifacts") == version:
        return {}
    for file in files:
        folder = str(file.parent.relative_to(path)) if file.parent != path else None
        target.client.log_artifact(run_id, str(file), folder)
    return {"runner_logged.artifacts": version}


def sync(target: Target, path: Path, *, running: bool = False, parent: str | None = None,
         extra_tags: dict[str, str] | None = None) -> str:
    """Copies what the store lacks of the run dir at ``path`` into its MLflow run (made if it has none); its id.
    ``running``: the run is going on (this process runs it): its status is RUNNING, its artifacts wait for the end.
    Raises StoreError when the store fails."""
    try:
        return _sync(target, path, running, parent, extra_tags or {})
    except StoreError:
        raise
    except Exception as err:  # noqa: BLE001  MLflow's, requests', SQLAlchemy's errors: one line
        raise StoreError(f"{_shown(target.uri)}: {_brief(err)}") from None


def _sync(target: Target, path: Path, running: bool, parent: str | None, extra_tags: dict[str, str]) -> str:
    client, rd = target.client, read(path)
    run = _found(target, path)
    if run is None:
        uid = _uid(path)
        started = path.stat().st_mtime
        with contextlib.suppress(ValueError, TypeError):
            started = time.mktime(time.strptime(str(rd.provenance.get("time"))[:19], "%Y-%m-%dT%H:%M:%S"))
        run = client.create_run(target.experiment_id, start_time=int(started * 1000), run_name=run_name(path),
                                tags={UID: uid})
        target.made.add(run.info.run_id)
        _remember(path, target.uri, run.info.run_id)
    run_id, have = run.info.run_id, run.data.tags
    params = {k: _param(v) for k, v in flat(rd.config).items() if k not in run.data.params}
    tags = {k: v for k, v in {**_tags(rd, path), **extra_tags}.items() if have.get(k) != v}
    if parent and have.get("mlflow.parentRunId") != parent:
        tags["mlflow.parentRunId"] = parent
    _log(target, run_id, params=params, tags=tags)
    _log_lines(target, run_id, _lines(path), int(have.get(LINES, 0) or 0))
    file_metrics, file_tags = _file_metrics(rd, path, have)
    _log(target, run_id, file_metrics, tags=file_tags)
    if running:
        if run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    extra = [*sorted(path.glob(".hydra/resumes/*/config.yaml")), *sorted(path.glob(".hydra/*/config.yaml")),
             *sorted(path.glob("*.yaml"))]  # a resume's config, a bench's or tune's, the experiment tune wrote
    done_tags = _artifacts(target, run_id, path, RUN_FILES, have, extra)
    if done_tags:
        _log(target, run_id, tags=done_tags)
    status = STATUS[rd.status]
    if run.info.status != status:
        client.set_terminated(run_id, status, end_time=int(_last_write(path) * 1000))
    return run_id


def _last_write(path: Path) -> float:
    times = [p.stat().st_mtime for p in (path / n for n in ("summary.json", "metrics.jsonl", "eval.json",
                                                             "bench.json", "tune.json")) if p.is_file()]
    return max(times) if times else path.stat().st_mtime


# ---------------------------------------------------------------------------------------------- sweeps
def is_sweep_dir(path: Path) -> bool:
    return (path / SWEEP).is_file()


def _sweep_record(sweep_dir: Path) -> dict:
    try:
        data = yaml.safe_load((sweep_dir / SWEEP).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def sweep_config(sweep_dir: Path) -> dict:
    """The sweep's config as Hydra recorded it (its jobs' common values), without Hydra's own."""
    return {k: v for k, v in _sweep_record(sweep_dir).items() if k != "hydra"}


def sync_parent(target: Target, sweep_dir: Path, *, running: bool = False, overrides: list[str] | None = None,
                status: str = "FINISHED") -> str:
    """The sweep's parent run (made if it has none): the sweep's overrides (``overrides``, else Hydra's record of
    them) as a param, the report's files as artifacts once it has them, ``status`` at the end; its id."""
    try:
        return _sync_parent(target, sweep_dir, running, overrides, status)
    except Exception as err:  # noqa: BLE001
        raise StoreError(f"{_shown(target.uri)}: {_brief(err)}") from None


def _sync_parent(target: Target, sweep_dir: Path, running: bool, overrides: list[str] | None, status: str) -> str:
    client = target.client
    run = _found(target, sweep_dir)
    if run is None:
        uid = _uid(sweep_dir)
        run = client.create_run(target.experiment_id, start_time=int(sweep_dir.stat().st_ctime * 1000),
                                run_name=sweep_dir.resolve().name, tags={UID: uid})
        target.made.add(run.info.run_id)
        _remember(sweep_dir, target.uri, run.info.run_id)
    run_id, have = run.info.run_id, run.data.tags
    hydra = _sweep_record(sweep_dir).get("hydra") or {}
    if overrides is None:
        overrides = (hydra.get("overrides") or {}).get("task") or []
    params = {} if "sweep" in run.data.params else {"sweep": _param(" ".join(overrides))}
    tags = {k: v for k, v in {"kind": "sweep", "run_dir": str(sweep_dir.resolve()),
                              "sweeper": _plugin(hydra.get("sweeper")),
                              "launcher": _plugin(hydra.get("launcher"))}.items() if have.get(k) != v}
    _log(target, run_id, params=params, tags=tags)
    if not running:
        done_tags = _artifacts(target, run_id, sweep_dir, SWEEP_FILES, have, sorted(sweep_dir.glob("*.png")))
        if done_tags:
            _log(target, run_id, tags=done_tags)
    if running and run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    elif not running and run.info.status != status:
        client.set_terminated(run_id, status)
    return run_id


def _plugin(node: Any) -> str:
    target = (node or {}).get("_target_", "") if isinstance(node, dict) else ""
    return target.rsplit(".", 1)[-1] or "unknown"


def job_tags(sweep_dir: Path, job_dir: Path, rd: RunDir) -> dict[str, str]:
    """A sweep job's tags: its group (jobs that differ only in report.replicate_over's keys, the seeds, share it),
    and under a search its trial's number and state."""
    config = flat(rd.config)
    repeats = tuple(config.get("report.replicate_over") or ("seed",))
    kept = {k: v for k, v in config.items()
            if k != "run_dir" and not any(k == r or k.startswith(f"{r}.") for r in repeats)}
    tags = {"group": hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12],
            "sweep_dir": str(sweep_dir.resolve())}
    if (sweep_dir / STUDY_FILE).is_file() and job_dir.name.isdigit():
        tags["trial"] = job_dir.name
        tags["trial_state"] = TRIAL_STATE.get(rd.status, "RUNNING")
    return tags


def sync_job(target: Target, sweep_dir: Path, job_dir: Path, *, running: bool = False) -> str:
    return sync(target, job_dir, running=running, parent=logged_as(sweep_dir, target.uri),
                extra_tags=job_tags(sweep_dir, job_dir, read(job_dir)))


def jobs_of(sweep_dir: Path) -> list[Path]:
    """The sweep's job dirs (its run dirs), in order."""
    return [p for p in find([sweep_dir]) if p != sweep_dir]


def sweep_started(tracking: Any, sweep_dir: Path, cwd: Path, experiment: str | None, overrides: list[str]) -> None:
    """A sweep about to launch its jobs: its parent run made (and recorded in the sweep dir for the jobs)."""
    if tracking.name != "mlflow":
        return
    uri = store_uri(tracking.uri, cwd)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sync_parent(Target.open(uri, tracking.experiment or experiment or "runner"), sweep_dir, running=True,
                    overrides=overrides)
    except (StoreError, OSError) as err:
        log.warning("tracking: %s; the sweep goes on and its dir keeps everything: python -m runner.records.track %s "
                    "logs it later", err, sweep_dir)


def sweep_ended(tracking: Any, sweep_dir: Path, cwd: Path, experiment: str | None, stopped: bool) -> None:
    """A sweep whose jobs have ended and whose report is written: the report's files logged to the parent run, and
    whatever its jobs could not log (a job that found the store down) logged now."""
    if tracking.name != "mlflow":
        return
    uri = store_uri(tracking.uri, cwd)
    try:
        target = Target.open(uri, tracking.experiment or experiment or "runner")
        sync_parent(target, sweep_dir, status="KILLED" if stopped else "FINISHED")
        for job_dir in jobs_of(sweep_dir):
            sync_job(target, sweep_dir, job_dir)
    except StoreError as err:
        log.warning("tracking: %s; the sweep dir keeps everything: python -m runner.records.track %s logs it later",
                    err, sweep_dir)


# ---------------------------------------------------------------------------------------------- while a run runs
class Tracker(threading.Thread):
    """Mirrors a run dir while its run goes on: a sync every ``every`` seconds in this thread, and one at the end.
    The run never waits on the store: a store that fails is one warning line, and the thread stops trying (the run
    dir keeps everything; python -m runner.records.track logs it later)."""

    def __init__(self, uri: str, experiment: str, path: Path, sweep_dir: Path | None, every: float):
        super().__init__(name="runner-tracking", daemon=True)
        self.uri, self.experiment, self.path, self.sweep_dir, self.every = uri, experiment, path, sweep_dir, every
        self.done = threading.Event()
        self.failed = False

    def _sync(self, target: Target, running: bool) -> None:
        if self.sweep_dir is not None:
            sync_job(target, self.sweep_dir, self.path, running=running)
        else:
            sync(target, self.path, running=running)

    def run(self) -> None:
        try:
            target = Target.open(self.uri, self.experiment)
            self._sync(target, running=True)
            while not self.done.wait(self.every):
                self._sync(target, running=True)
            self._sync(target, running=False)
        except Exception as err:  # noqa: BLE001  a store down or refusing: said once, never raised into the run
            self.failed = True
            log.warning("tracking: %s; the run goes on and its dir keeps everything: python -m runner.records.track %s "
                        "logs it later", str(err) if isinstance(err, StoreError) else _brief(err), self.path)

    def finish(self, wait_secs: float) -> None:
        self.done.set()
        self.join(wait_secs)
        if self.is_alive() and not self.failed:
            log.warning("tracking: %s did not answer within %.0f s; the run dir keeps everything: python -m "
                        "runner.records.track %s logs it", _shown(self.uri), wait_secs, self.path)


@contextlib.contextmanager
def tracked(tracking: Any, mode: str, path: Path, cwd: Path, sweep_dir: Path | None = None, owner: bool = True,
            every: float = 10.0, wait_secs: float = 20.0) -> Iterator[None]:
    """Tracks the run in ``path`` while the body runs it, as ``tracking`` (the config's section) says, in the
    process that owns the run dir."""
    if tracking.name != "mlflow" or mode == "convert" or not owner:
        yield
        return
    experiment = tracking.experiment or experiment_of(path, {})
    tracker = Tracker(store_uri(tracking.uri, cwd), experiment, path, sweep_dir, every)
    tracker.start()
    try:
        yield
    finally:
        tracker.finish(wait_secs)
