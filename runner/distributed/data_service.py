"""tf.data service for a run's training batches (``pipeline.service`` of the tf_data pipeline): a dispatcher and
worker processes run the input pipeline and stream batches to the trainers.

- ``local``: this process starts a dispatcher and ``pipeline.service_workers`` worker processes on 127.0.0.1 for
  the run, and stops them when it ends (a worker also ends with its parent, even on SIGKILL). One of them that ends
  while the run goes stops the run as SIGTERM does (a checkpoint, then exit), said in one line: tf.data service
  waits for a lost worker's share of the epoch.
- ``grpc://HOST:PORT``: a dispatcher already running (``python -m runner.service dispatcher --port PORT``), with
  workers of its own (``python -m runner.service worker --dispatcher HOST:PORT``); one that does not answer within
  :data:`CONNECT_SECS` is named, and one that stops answering for :data:`LOST_SECS` mid-run stops the run as
  SIGTERM does (one restarted with its ``--work-dir`` within that time lets the run go on).

Every tower and every cluster worker of a run reads from one service job (``pipeline.job_name``, by default one
per run dir), each getting its share. Evaluations stay in the trainer's process, with their exact example counts.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from omegaconf import DictConfig, open_dict

from runner.config.checks import SERVICE_SCHEME, service_address
from runner.core.errors import RunnerError
from runner.core.system import end_with_parent, free_ports

log = logging.getLogger("runner")
CONNECT_SECS = 15.0  # how long a dispatcher is waited for before it is named as unreachable
STOP_SECS = 10.0  # how long a local worker gets to end before it is killed
LOST_SECS = 60.0  # how long a dispatcher may not answer mid-run before the run stops (a restart takes seconds)
REGISTER_SECS = 120.0  # how long local workers get to register with the dispatcher (each loads TensorFlow)
SERVING = "tf.data service dispatcher at"  # the line a dispatcher says once it serves
WORKING = "tf.data service worker for the dispatcher at"  # the line a worker says once it has registered


def uses_service(cfg: DictConfig) -> bool:
    return cfg.pipeline.name == "tf_data" and cfg.pipeline.get("service") is not None


def job_name(run_dir: str) -> str:
    """The run's service job: one per run dir, so every consumer of the run (towers, cluster workers) shares it."""
    return "runner-" + hashlib.sha1(str(Path(run_dir).absolute()).encode()).hexdigest()[:12]


def check_reachable(service: str, wait_secs: float = CONNECT_SECS) -> None:
    """Waits up to ``wait_secs`` for the dispatcher to accept a connection; names it when it does not."""
    host, port = service_address(service)
    deadline = time.monotonic() + wait_secs
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, wait_secs)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise RunnerError(f"pipeline.service={service}: no tf.data service dispatcher answers at "
                                  f"{host}:{port} ({err.strerror or err}; waited {wait_secs:.0f} s); start one with "
                                  f"python -m runner.service dispatcher --port {port}, or use pipeline.service=local"
                                  ) from None
            time.sleep(0.5)


@contextlib.contextmanager
def input_service(cfg: DictConfig, run_dir: str) -> Iterator[DictConfig]:
    """``cfg`` with its service resolved to a dispatcher's address and a job name, for as long as the run goes (a
    local service is started here and stopped at the end); ``cfg`` itself when the pipeline uses none."""
    if not uses_service(cfg):
        yield cfg
        return
    pipeline = cfg.pipeline
    name = pipeline.job_name or job_name(run_dir)
    if pipeline.service != "local":
        check_reachable(pipeline.service)
        watch = _Watch(_dispatcher_answers(pipeline.service), every=2.0)
        try:
            yield _resolved(cfg, pipeline.service, name)
        finally:
            watch.stop()
        return
    with local_service(pipeline.service_workers) as address:
        yield _resolved(cfg, address, name)


def _resolved(cfg: DictConfig, address: str, name: str) -> DictConfig:
    log.info("Input: the training batches (read, decode, preprocess, batch) are made by the tf.data service at %s, "
             "job %s (%s); evaluations in this process", address, name, cfg.pipeline.processing_mode)
    out = cfg.copy()
    with open_dict(out):
        out.pipeline.service, out.pipeline.job_name = address, name
    return out


@contextlib.contextmanager
def local_service(workers: int, cpus: list[int] | None = None) -> Iterator[str]:
    """A dispatcher and ``workers`` worker processes on 127.0.0.1 (on ``cpus`` alone, if given), started and
    waited for until each serves; its address. All of the service's work is outside this process: a dispatcher in
    it would hand out the epoch's files on the trainer's CPU."""
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    children: list[_Child] = []
    try:
        children.append(_Child("dispatcher", ["dispatcher", "--port", str(port)], SERVING, cpus))
        children[0].wait_serving()
        children += [_Child("worker", ["worker", "--dispatcher", address], WORKING, cpus) for _ in range(workers)]
        for child in children[1:]:
            child.wait_serving()
        log.info("pipeline.service=local: a tf.data service dispatcher at %s (pid %d) and %d worker process(es) "
                 "(pids %s)", address, children[0].process.pid, workers,
                 ", ".join(str(c.process.pid) for c in children[1:]))
        watch = _Watch(_service_ended(children), every=0.5)
        try:
            yield SERVICE_SCHEME + address
        finally:
            watch.stop()
    finally:
        for child in children:
            child.quiet = True  # its last lines ("stopped") come after the run's
        for child in children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_SECS
        for child in children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


class _Child:
    """A service process the run starts: it ends with the run, on ``cpus``; its lines are the run's, and it serves
    once it has said ``serving``."""

    def __init__(self, role: str, args: list[str], serving: str, cpus: list[int] | None):
        self.role, self.serving, self.said = role, serving, threading.Event()
        self.process = subprocess.Popen([sys.executable, "-m", "runner.service", *args], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                        env=service_env(), preexec_fn=functools.partial(_in_child, cpus))
        self.last, self.serves, self.quiet = "", False, False
        threading.Thread(target=self._relay, daemon=True, name=f"relay-{role}").start()

    def _relay(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.last = line
            if not self.quiet:
                log.info("%s", line)
            if self.serving in line:
                self.serves = True
                self.said.set()
        self.said.set()  # its output ended: so did it

    def wait_serving(self) -> None:
        if not self.said.wait(REGISTER_SECS):
            raise RunnerError(f"the tf.data service {self.role} (pid {self.process.pid}) did not start within "
                              f"{REGISTER_SECS:.0f} s")
        if not self.serves:
            raise RunnerError(f"the tf.data service {self.role} (pid {self.process.pid}) ended with status "
                              f"{self.process.wait()} before it served: {self.last}")


def _in_child(cpus: list[int] | None) -> None:
    """In a worker's child process before it runs: it ends with the run, on its CPUs."""
    end_with_parent()
    if cpus:
        os.sched_setaffinity(0, cpus)


def service_env() -> dict[str, str]:
    """The environment of a service process a run starts: TensorFlow's start-up lines as quiet as the run's."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"), "PYTHONUNBUFFERED": "1"}


class _Watch:
    """Calls ``check`` every ``every`` seconds while the run goes; when it names a reason the run cannot go on (the
    trainer would wait for batches that never come), says it and stops the run as SIGTERM does: a checkpoint at
    the next step, or, if that step never ends, an exit keeping the last one."""

    def __init__(self, check: Callable[[], str | None], every: float):
        self.check, self.every, self.done = check, every, threading.Event()
        self.thread = threading.Thread(target=self._run, name="data-service-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            reason = self.check()
            if reason:
                log.error("%s: stopping the run", reason)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def _service_ended(children: list[_Child]) -> Callable[[], str | None]:
    """The reason to stop once a process of the local service has ended: a job does not go on without one of its
    workers (the trainer waits for that worker's share of the epoch), so the run stops, and a rerun resumes it with
    a new service."""
    def check() -> str | None:
        for child in children:
            if child.process.poll() is not None:
                return (f"the tf.data service {child.role} {child.process.pid} ended (exit status "
                        f"{child.process.returncode}); rerun the same command to resume with a new service")
        return None
    return check


def _dispatcher_answers(service: str) -> Callable[[], str | None]:
    """The reason to stop once the dispatcher has not answered for :data:`LOST_SECS` (one restarted with its
    --work-dir is back within seconds, and the run goes on)."""
    host, port = service_address(service)
    since: list[float] = []

    def check() -> str | None:
        try:
            socket.create_connection((host, port), timeout=2.0).close()
            since.clear()
            return None
        except OSError:
            since[:] = since or [time.monotonic()]
            if time.monotonic() - since[0] < LOST_SECS:
                return None
            return (f"the tf.data service dispatcher at {host}:{port} has not answered for {LOST_SECS:.0f} s; start "
                    f"it again (with its --work-dir it keeps its jobs) and rerun the same command to resume")
    return check
