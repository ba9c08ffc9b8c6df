"""``python -m runner.service``: the roles of a tf.data service, for runs whose ``pipeline.service`` is its
dispatcher's grpc://HOST:PORT (runner.distributed.data_service).

- ``dispatcher --port P [--work-dir DIR]`` and ``worker --dispatcher HOST:P``: one role on this machine, until
  SIGTERM or Ctrl-C.
- ``slurm [--port-base P] [--wait-secs S] OVERRIDES...``: each task of a SLURM job step (``srun``) takes its role
  from SLURM's environment, through TensorFlow's SlurmClusterResolver as ``hardware=cluster`` does: task 0 is the
  dispatcher, task 1 the trainer (``python -m runner OVERRIDES`` reading from the service), the rest input workers.
  The trainer holds its own port open while it runs; the dispatcher and the workers end (status 0) when it closes,
  however the trainer ended, so the step ends with the trainer's status.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from runner.config.checks import SERVICE_SCHEME
from runner.core.errors import RunnerError
from runner.core.system import end_with_parent
from runner.core.tfload import load_tensorflow
from runner.distributed.data_service import SERVING, WORKING, check_reachable

log = logging.getLogger("runner")
SLURM_WAIT_SECS = 300.0  # under SLURM: how long a role waits for the others to start (each loads TensorFlow)


def main(argv: list[str] | None = None) -> None:
    """A role of a tf.data service on this machine, until stopped."""
    parser = argparse.ArgumentParser(prog="python -m runner.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the service's dispatcher")
    dispatcher.add_argument("--port", type=int, required=True)
    dispatcher.add_argument("--work-dir", help="where it keeps its state: it survives its own restart")
    worker = roles.add_parser("worker", help="a worker that runs input pipelines for the dispatcher")
    worker.add_argument("--dispatcher", required=True, help="HOST:PORT of the dispatcher")
    worker.add_argument("--port", type=int, default=0, help="its own port (0: any free one)")
    slurm = roles.add_parser("slurm", help="each task of a SLURM job step: task 0 the dispatcher, task 1 the trainer "
                                           "(python -m runner OVERRIDES), the rest input workers")
    slurm.add_argument("--port-base", type=int, default=8888,
                       help="the first task's port on each node (as hardware.port_base)")
    slurm.add_argument("--wait-secs", type=float, default=SLURM_WAIT_SECS,
                       help="how long a task waits for the others to start")
    slurm.add_argument("overrides", nargs=argparse.REMAINDER, help="the trainer's overrides, as python -m runner's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop = threading.Event()  # the servers run in threads of their own; this one waits for SIGTERM or Ctrl-C
    try:
        if args.role == "slurm":
            sys.exit(_slurm(args.port_base, args.wait_secs, args.overrides, stop))
        _until(stop)
        server = _dispatcher(args.port, args.work_dir) if args.role == "dispatcher" else \
            _worker(args.dispatcher, args.port)
    except RunnerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    while not stop.wait(1.0):
        pass
    _stopped(server)


def _stopped(server, code: int = 0) -> None:
    """Ends this process with ``code``, its server with it. The server is not stopped first: a worker's stop waits,
    holding Python's lock, on a dispatcher that may be gone, and tf.data service is built for its roles ending at
    any time (a worker's tasks go to the others, a dispatcher's --work-dir holds its state)."""
    log.info("stopped (%s)", "dispatcher" if "Dispatch" in type(server).__name__ else "worker")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _until(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _port_free(port: int) -> None:
    """Nothing listens on ``port`` (a port a stopped server left in TIME_WAIT is free, as gRPC binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as err:
            raise RunnerError(f"port {port} is in use ({err.strerror}); choose another with --port") from None


def _dispatcher(port: int, work_dir: str | None):
    _port_free(port)
    tf = load_tensorflow(verbose=False)
    service = tf.data.experimental.service
    config = service.DispatcherConfig(port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None)
    server = service.DispatchServer(config)
    log.info("%s %s%s", SERVING, server.target,
             f" (state in {work_dir}: it survives a restart)" if work_dir else "")
    return server


def _worker(dispatcher: str, port: int, wait_secs: float | None = None):
    if port:
        _port_free(port)
    tf = load_tensorflow(verbose=False)
    check_reachable(SERVICE_SCHEME + dispatcher, *([wait_secs] if wait_secs else []))
    service = tf.data.experimental.service
    host = dispatcher.rpartition(":")[0]
    own = "127.0.0.1" if host in ("127.0.0.1", "localhost") else socket.getfqdn()
    server = service.WorkerServer(service.WorkerConfig(dispatcher_address=dispatcher, port=port,
                                                       worker_address=f"{own}:%port%"))
    log.info("%s %s (pid %d)", WORKING, dispatcher, os.getpid())
    return server


# ----------------------------------------------------------------------------------------------------- SLURM
@dataclass
class SlurmRoles:
    """This task's role in the job step and the addresses of the dispatcher and the trainer."""

    role: str  # dispatcher | trainer | worker
    index: int
    dispatcher: str  # HOST:PORT
    trainer: str  # HOST:PORT: the trainer holds it open while it runs
    own: str  # this task's HOST:PORT


def slurm_roles(port_base: int) -> SlurmRoles:
    """The roles from SLURM's environment, through TensorFlow's SlurmClusterResolver (its jobs in name order: the
    dispatcher is task 0, the trainer task 1, the workers the rest)."""
    if "SLURM_PROCID" not in os.environ:
        raise RunnerError("python -m runner.service slurm runs as the tasks of a SLURM job step: srun -n N (N >= 3: "
                          "a dispatcher, the trainer and N-2 input workers), in an sbatch script or an allocation")
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 0)
    if tasks < 3:
        raise RunnerError(f"this SLURM job step has {tasks} task(s): run at least 3 (srun -n 3), a dispatcher, the "
                          f"trainer and one input worker per further task")
    tf = load_tensorflow(verbose=False)
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        jobs={"dispatcher": 1, "trainer": 1, "worker": tasks - 2}, port_base=port_base, gpus_per_node=64,
        gpus_per_task=1, auto_set_gpu=False)  # the input runs on CPUs; the trainer's devices are its own
    spec = resolver.cluster_spec()
    role, index = resolver.task_type, int(resolver.task_id)
    return SlurmRoles(role, index, spec.task_address("dispatcher", 0), spec.task_address("trainer", 0),
                      spec.task_address(role, index))


def _slurm(port_base: int, wait_secs: float, overrides: list[str], stop: threading.Event) -> int:
    """This task's role until the trainer ends; the trainer's exit status (0 for the service's roles)."""
    roles = slurm_roles(port_base)
    port = int(roles.own.rsplit(":", 1)[1])
    log.info("SLURM task %s: %s %d at %s (dispatcher %s, trainer %s)", os.environ["SLURM_PROCID"], roles.role,
             roles.index, roles.own, roles.dispatcher, roles.trainer)
    if roles.role == "trainer":
        return _train(port, roles.dispatcher, overrides)
    _until(stop)
    server = _dispatcher(port, None) if roles.role == "dispatcher" else _worker(roles.dispatcher, port, wait_secs)
    try:
        _while_trainer_runs(roles.trainer, wait_secs, stop)
    except RunnerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        _stopped(server, 2)
    _stopped(server)
    return 0


def _train(port: int, dispatcher: str, overrides: list[str]) -> int:
    """The trainer: ``python -m runner OVERRIDES`` reading from the service, while this process holds ``port``
    open for the other tasks; a signal to this task goes to the run (it checkpoints)."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("", port))
        except OSError as err:
            raise RunnerError(f"the trainer cannot hold port {port} ({err.strerror}); give another --port-base"
                              ) from None
        held.listen(64)
        connections: list[socket.socket] = []
        threading.Thread(target=_accept, args=(held, connections), daemon=True, name="trainer-port").start()
        command = [sys.executable, "-m", "runner", *overrides, f"pipeline.service={SERVICE_SCHEME}{dispatcher}"]
        run = subprocess.Popen(command, preexec_fn=end_with_parent)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _: run.send_signal(signum))
        code = run.wait()
        for connection in connections:
            connection.close()
    return code


def _accept(held: socket.socket, connections: list[socket.socket]) -> None:
    with contextlib.suppress(OSError):  # the socket closed: the trainer is done
        while True:
            connections.append(held.accept()[0])


def _while_trainer_runs(trainer: str, wait_secs: float, stop: threading.Event) -> None:
    """Returns once the trainer's port closes (however it ended), or on SIGTERM/SIGINT; a trainer that never
    holds its port within ``wait_secs`` is named."""
    host, port = trainer.rsplit(":", 1)
    deadline = time.monotonic() + wait_secs
    while True:
        try:
            connection = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError as err:
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise RunnerError(f"the trainer at {trainer} did not start within {wait_secs:.0f} s ({err.strerror})"
                                  ) from None
            time.sleep(1.0)
    with connection:
        connection.settimeout(1.0)
        while not stop.is_set():
            try:
                if not connection.recv(1):
                    return  # closed: the trainer ended
            except TimeoutError:
                continue
            except OSError:
                return
