"""Sweeps that a signal stops as a whole and a rerun continues, in a dir named by the sweep as typed.

A signal to the sweep's process (or to a job) stops every running job at its next safe point: each writes a
checkpoint and is marked interrupted; jobs not yet started are not started. The sweep dir then holds an
``.interrupted`` marker until the report is written and the sweep exits with 128 + signal. The sweep dir is named
by the sweep's overrides, so the same command finds it again: finished jobs are skipped, interrupted ones resume
from their checkpoints.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.core.errors import ConfigError
from runner.core.results import objective_paths
from runner.core.signals import SIGNALS, raise_interrupted, raise_on_signals

MARKER = ".interrupted"
log = logging.getLogger("runner")
RUNNING = ".running"  # one file per process running a job, named HOST-PID; the folder goes with the last job


def sweep_key(overrides) -> str:
    """A sweep's dir name from its overrides as typed: the same sweep command finds the same dir again, so a rerun
    continues it (conf/config.yaml's ``hydra.sweep.dir``, through the ``runner.sweep_key`` resolver).

    Registered with ``use_cache``: the launcher resolves ``hydra.sweep.dir`` once on the sweep's own config (whose
    ``hydra.overrides.task`` is the sweep as typed, ``batch_size=50,100``), and Hydra copies that config's resolver
    cache into every job's config (``load_sweep_config``), pickled along to joblib, submitit and Ray workers. So
    every job resolves the sweep's dir, not one of its own from its own overrides (``batch_size=50``)."""
    text = " ".join(sorted(str(o) for o in overrides))
    return "sweep-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def objective(summary: dict, objective: Any) -> float | list[float]:
    """``sweep_objective``'s number(s) in a summary: one, or a list for several objectives."""
    values = [value_at(summary, path) for path in objective_paths(objective)]
    return values[0] if isinstance(objective, str) else values


def value_at(summary: dict, path: str) -> float:
    """The number at a dotted path of summary.json."""
    value = summary
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ConfigError(f"sweep_objective={path}: summary.json has no {key!r}; try final_precision.test or "
                              f"examples_per_sec")
        value = value[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"sweep_objective={path}: summary.json holds {value!r} there, not a number")
    return float(value)


def interrupted(sweep_dir: Path) -> int | None:
    """The signal number that stopped the sweep, if one did."""
    try:
        return int((sweep_dir / MARKER).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def mark(sweep_dir: Path, signum: int) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if interrupted(sweep_dir) is None:
        (sweep_dir / MARKER).write_text(f"{signum}\n")


def clear(sweep_dir: Path) -> int | None:
    signum = interrupted(sweep_dir)
    with contextlib.suppress(FileNotFoundError):
        (sweep_dir / MARKER).unlink()
    return signum


_in_job = threading.Event()  # this process is running a job (the serial launcher runs them in the sweep's process)


def _marker_name(pid: int) -> str:
    return f"{socket.gethostname()}-{pid}"


def _local_pid(marker: Path) -> int | None:
    """The pid a marker names, when it names a process of this machine (a SLURM job may run on another node) that
    is the process that wrote it: its start time and command line as the marker recorded them (so a planted marker,
    or a pid reused by another process, names nobody)."""
    host, _, pid = marker.name.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        recorded = marker.read_text()
    except OSError:
        return None
    return int(pid) if recorded and recorded == _identity(int(pid)) else None


def _identity(pid: int) -> str:
    """A process's start time (clock ticks since boot) and command line, from /proc: empty when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    start = stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name (which may hold spaces)
    return f"{start} {hashlib.sha256(cmdline).hexdigest()[:16]}\n"


def _remove_running(running: Path) -> None:
    with contextlib.suppress(OSError):  # still in use by another job, or already gone
        running.rmdir()


def clear_stale(sweep_dir: Path) -> None:
    """Removes the markers of this machine's jobs whose process is gone (killed with SIGKILL, say)."""
    running = sweep_dir / RUNNING
    for marker in running.glob("*") if running.is_dir() else ():
        if marker.name.rpartition("-")[0] == socket.gethostname() and _local_pid(marker) is None:
            marker.unlink(missing_ok=True)  # its process is gone, or it never named this sweep's job
    _remove_running(running)


@contextlib.contextmanager
def job(sweep_dir: Path, name: str = "") -> Iterator[None]:
    """Runs one job: its pid is listed for the sweep's signal forwarding, and a signal outside its training loop
    raises Interrupted. The process's signal handlers are restored afterwards (a pool worker lives on). In a pool
    worker of a parallel sweep, where several jobs write to one terminal, its lines start with ``[job NAME]``."""
    running = sweep_dir / RUNNING
    pid_file = running / _marker_name(os.getpid())
    for _ in range(100):  # another job's end may remove the folder between its making and this marker's
        running.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            pid_file.write_text(_identity(os.getpid()))
            break
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS} if main else {}
    raise_on_signals()
    _stop_when_orphaned()
    consoles = [h for h in logging.getLogger().handlers
                if name and _in_pool_worker() and type(h) is logging.StreamHandler]
    formats = [h.formatter for h in consoles]
    for handler in consoles:
        handler.setFormatter(_JobPrefix(name, handler.formatter))
    _in_job.set()
    try:
        yield
    finally:
        _in_job.clear()
        for handler, formatter in zip(consoles, formats):
            handler.setFormatter(formatter)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pid_file.unlink(missing_ok=True)
        _remove_running(running)


SWEEP_PID_ENV = "RUNNER_SWEEP_PID"  # set by the sweep's process for the pool workers it starts
ORPHAN_GRACE_SECS = 60


def _stop_when_orphaned() -> None:
    """In a pool worker of a local parallel sweep (a child of the sweep's process): once the sweep's process is gone
    (killed -9, say), the worker stops its job as a signal would (writing its checkpoint), then exits. Started once
    per process; a job elsewhere (SLURM, Ray, the sweep's own process) is left alone."""
    global _watching
    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    if _watching or not sweep_pid or not sweep_pid.isdigit() or os.getppid() != int(sweep_pid):
        return
    _watching = True
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.error("the sweep's process (pid %d) is gone: this worker stops its job and exits", parent)
        os.kill(os.getpid(), signal.SIGTERM)  # the job's loop checkpoints and stops; an idle worker ends here
        deadline = time.monotonic() + ORPHAN_GRACE_SECS
        while _in_job.is_set() and time.monotonic() < deadline:
            time.sleep(0.5)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


_watching = False


def _in_pool_worker() -> bool:
    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    return bool(sweep_pid) and sweep_pid == str(os.getppid())


class _JobPrefix(logging.Formatter):
    """A console's lines, each started with ``[job NAME]`` (the job's log file keeps them as they are)."""

    def __init__(self, name: str, inner: logging.Formatter | None):
        super().__init__()
        self.prefix, self.inner = f"[job {name}] ", inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(self.prefix + line for line in self.inner.format(record).splitlines())


def forward_signals(sweep_dir: Path) -> None:
    """In the sweep's process: a signal marks the sweep interrupted and reaches every process running a job (pool
    workers that run none are left alone). A job running in this process itself is interrupted too."""

    os.environ[SWEEP_PID_ENV] = str(os.getpid())  # inherited by the pool workers a launcher starts from here

    def handle(signum, frame):
        mark(sweep_dir, signum)
        for marker in (sweep_dir / RUNNING).glob("*"):
            pid = _local_pid(marker)
            if pid is not None and pid != os.getpid():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
        if _in_job.is_set():
            raise_interrupted(signum, frame)

    for sig in SIGNALS:
        signal.signal(sig, handle)
