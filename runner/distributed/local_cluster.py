"""hardware=local_cluster: the cluster of ``hardware=cluster`` started on 127.0.0.1 by one command.

Each task (ps, workers, the evaluator if asked) is a child process running the same command with
``hardware=cluster`` and its role in ``TF_CONFIG``, on free ports. This process owns the run dir (lock, saved
config, history), prints every task's lines prefixed by its role, and watches them: a task that fails stops the
others and the command exits non-zero naming it and its last error line; a signal reaches every task (the chief
checkpoints) and nothing outlives the command. TensorFlow's thread pools are divided among the tasks. The tasks share
a private network (netns.Network), so their servers are reachable by each other alone.

With ``pipeline.service=local`` the launcher also starts a tf.data service there (a dispatcher and
``pipeline.service_workers`` workers, watched like the tasks) and every worker task reads from its one job.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from runner.config.fields import TASK
from runner.config.hydra import override_key
from runner.config.schema import keys_tagged
from runner.core.errors import RunnerError
from runner.core.signals import Interrupted, StopSignals, signal_name
from runner.core.system import cores, end_with_parent, free_ports
from runner.distributed.data_service import SERVING, job_name, service_env
from runner.distributed.netns import Network
from runner.distributed.roles import LAUNCHED_ENV
from runner.run import rundir
from runner.run.invocation import Invocation
from runner.run.setup import training_setup

log = logging.getLogger("runner")
STOP_GRACE_SECS = 40  # after a signal, how long the tasks get to checkpoint and exit before they are killed
FAIL_GRACE_SECS = 5  # after a failure, how long the other tasks get before they are killed
DONE_GRACE_SECS = 60  # after the workers end, how long the ps tasks and the evaluator get to end
SERVICE_START_SECS = 120  # how long a tf.data service dispatcher gets to start (it loads TensorFlow)


@dataclass
class ChildTask:
    """One task of the local cluster: its child process and its last lines."""

    role: str
    index: int
    process: subprocess.Popen
    lines: deque = field(default_factory=lambda: deque(maxlen=50))
    serves: bool = False  # a tf.data service process: it runs until the launcher stops it

    @property
    def name(self) -> str:
        return f"{self.role} {self.index}"

    def last_error(self) -> str:
        """Its last line that says what went wrong (else its last line)."""
        for line in reversed(self.lines):
            if line.startswith(("error:", "stopped:", "Traceback", "Error", "ERROR")) or "Error:" in line:
                return line
        return self.lines[-1] if self.lines else "(no output)"


def _in_child(network: Network) -> None:
    """In a task's child process, before it runs: it ends with the launcher; into the cluster's private network."""
    end_with_parent()
    if network.private:
        network.join()


def task_command(cfg: DictConfig, run_dir: str, overrides: list[str], threads: int,
                 extra: list[str] = ()) -> list[str]:
    """The command every task runs: the launcher's overrides, with hardware=cluster and the launcher's hardware
    settings, the same run dir, and no config or log file of its own (the launcher keeps them); ``extra`` overrides
    replace the launcher's of the same keys."""
    replaced = {override_key(o) for o in extra}
    own = [o for o in overrides if override_key(o).split(".")[0] not in ("hardware", "run_dir")
           and override_key(o) not in replaced and not o.startswith("hydra")]
    hardware = cfg.hardware
    task_keys = [key.split(".", 1)[1] for key in keys_tagged(TASK)]  # the rest are local_cluster's own
    settings = [f"hardware.{key}={str(hardware[key]).lower() if isinstance(hardware[key], bool) else hardware[key]}"
                for key in task_keys]
    intra = hardware.intra_op_threads or threads
    inter = hardware.inter_op_threads or threads
    return [sys.executable, "-m", "runner", *own, "hardware=cluster", *settings, "hardware.resolver=tf_config",
            f"hardware.intra_op_threads={intra}", f"hardware.inter_op_threads={inter}", f"run_dir={run_dir}",
            "progress=lines", *extra]


def run(cfg: DictConfig, run_dir: str, invocation: Invocation) -> dict | None:
    """Trains on a local cluster: this process owns the run dir (its lock, resume check, history) and prepares the
    data once, so the tasks find it ready and a data error comes once."""
    with training_setup(cfg, run_dir) as (dataset, changed):
        hardware = cfg.hardware
        rundir.record_start(run_dir, cfg, dataset.class_names, changed,
                            devices=[f"local_cluster: {hardware.workers} worker(s), {hardware.ps} ps"],
                            overrides=invocation.overrides)
        return launch(cfg, run_dir, list(invocation.overrides))


def launch(cfg: DictConfig, run_dir: str, overrides: list[str]) -> dict | None:
    """Starts every task, relays their lines and watches them until the workers end; the chief's summary."""
    hardware = cfg.hardware
    ports = free_ports(hardware.ps + hardware.workers)
    cluster = {"ps": [f"127.0.0.1:{p}" for p in ports[:hardware.ps]],
               "worker": [f"127.0.0.1:{p}" for p in ports[hardware.ps:]]}
    roles = [("ps", i) for i in range(hardware.ps)] + [("worker", i) for i in range(hardware.workers)]
    roles += [("evaluator", 0)] if hardware.evaluator else []
    computing = hardware.workers + (1 if hardware.evaluator else 0)  # ps tasks mostly wait: they get one thread
    threads = max(1, cores() // computing)
    serving = cfg.pipeline.name == "tf_data" and cfg.pipeline.get("service") == "local"
    dispatcher_port = free_ports(1)[0] if serving else 0
    extra = [f"pipeline.service=grpc://127.0.0.1:{dispatcher_port}",
             f"pipeline.job_name={cfg.pipeline.job_name or job_name(run_dir)}"] if serving else []
    command = task_command(cfg, str(Path(run_dir).absolute()), overrides, threads, extra)
    tasks: list[ChildTask] = []
    with Network() as network, StopSignals(grace_secs=STOP_GRACE_SECS + 5) as stop, contextlib.ExitStack() as stack:
        log.info("local_cluster: %d ps, %d worker(s)%s on 127.0.0.1 %s; %d TensorFlow thread(s) per worker",
                 hardware.ps, hardware.workers, " and an evaluator" if hardware.evaluator else "",
                 "of a private network (the tasks' alone)" if network.private else "(the machine's network)", threads)
        if not network.private:
            log.warning("local_cluster: no private network (%s): TensorFlow's servers listen on every interface of "
                        "this machine, without authentication; firewall ports %s on a shared or exposed machine",
                        network.why_not, ",".join(map(str, ports)))
        stack.callback(_end_all, tasks, FAIL_GRACE_SECS)  # whatever happens, nothing outlives the command
        # A signal goes to the workers and the evaluator; the ps tasks hold the variables the chief's last checkpoint
        # reads, so they are stopped after the workers.
        stop.on_stop(lambda: _signal_all([t for t in tasks if t.role != "ps" and not t.serves],
                                         stop.signum or signal.SIGTERM))
        if serving:
            _start_service(tasks, network, dispatcher_port, cfg.pipeline.service_workers)
        for role, index in roles:
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": index}}),
                   LAUNCHED_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
            if role == "ps":  # a ps serves variables: one thread pool thread is plenty
                task_cmd = [c if not c.startswith(("hardware.intra_op", "hardware.inter_op")) else
                            c.split("=")[0] + "=1" for c in command]
            else:
                task_cmd = command
            task = _start(tasks, network, role, index, task_cmd, env)
            log.info("[%s] started (pid %d, %s)", task.name, task.process.pid,
                     cluster[role][index] if role in cluster else "no server")
        _watch(tasks, stop)
    if stop.signum is not None:
        stop.acknowledge()
        raise Interrupted(f"{signal_name(stop.signum)}: every task stopped; the chief's last checkpoint is in "
                          f"{Path(run_dir) / 'checkpoints'}; rerun with run_dir={run_dir} to resume", stop.signum)
    summary = Path(run_dir) / "summary.json"
    return json.loads(summary.read_text()) if summary.exists() else None


def _start(tasks: list[ChildTask], network: Network, role: str, index: int, command: list[str], env: dict,
           serves: bool = False) -> ChildTask:
    """A task's child process in the cluster's network, its lines relayed."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace",
                               start_new_session=True,  # a terminal's Ctrl-C reaches them through here
                               preexec_fn=functools.partial(_in_child, network))
    task = ChildTask(role, index, process, serves=serves)
    tasks.append(task)
    threading.Thread(target=_relay, args=(task,), daemon=True, name=f"relay-{role}{index}").start()
    return task


def _start_service(tasks: list[ChildTask], network: Network, port: int, workers: int) -> None:
    """A tf.data service in the cluster's network: its dispatcher on ``port`` (waited for), then its workers."""
    env = service_env()
    service = [sys.executable, "-m", "runner.service"]
    dispatcher = _start(tasks, network, "dispatcher", 0, [*service, "dispatcher", "--port", str(port)], env, True)
    deadline = time.monotonic() + SERVICE_START_SECS
    while not any(SERVING in line for line in list(dispatcher.lines)):
        if dispatcher.process.poll() is not None or time.monotonic() > deadline:
            time.sleep(0.2)  # its last lines
            how = f"did not start within {SERVICE_START_SECS} s" if dispatcher.process.poll() is None else \
                f"exited with status {dispatcher.process.returncode}"
            raise RunnerError(f"the tf.data service dispatcher {how}: {dispatcher.last_error()}")
        time.sleep(0.1)
    started = [_start(tasks, network, "input worker", index,
                      [*service, "worker", "--dispatcher", f"127.0.0.1:{port}"], env, True) for index in range(workers)]
    log.info("local_cluster: a tf.data service dispatcher at 127.0.0.1:%d (pid %d) and %d input worker(s) (pids %s) "
             "in the tasks' network; every worker task reads from its one job", port, dispatcher.process.pid, workers,
             ", ".join(str(t.process.pid) for t in started))


def _relay(task: ChildTask) -> None:
    """Prints a task's lines, prefixed by its role, and keeps its last ones."""
    for line in task.process.stdout:
        line = line.rstrip("\n")
        task.lines.append(line)
        log.info("[%s] %s", task.name, line)


def _watch(tasks: list[ChildTask], stop: StopSignals) -> None:
    """Until the workers have ended: a task that fails fails the command. Then the ps tasks (told by the workers)
    and the evaluator (after the last checkpoint) end on their own."""
    workers = [t for t in tasks if t.role == "worker"]
    while True:
        if stop.signum is not None:
            _wait([t for t in tasks if t.role != "ps" and not t.serves], STOP_GRACE_SECS)
            return
        for t in tasks:
            code = t.process.poll()
            if code is None or code == 0:  # a ps ends well only once every worker has told it it is done
                continue
            time.sleep(0.2)  # let its last lines arrive
            how = f"was killed by {signal_name(-code)}" if code < 0 else f"exited with status {code}"
            raise RunnerError(f"{t.name} {how}: {t.last_error()}. Every other task was stopped; rerun the same "
                              f"command to resume from the chief's last checkpoint")
        if all(w.process.poll() == 0 for w in workers):  # the service's processes are stopped at the end
            if _wait([t for t in tasks if not t.serves], DONE_GRACE_SECS, check=stop):
                return
        time.sleep(0.1)


def _wait(tasks: list[ChildTask], secs: float, check: StopSignals | None = None) -> bool:
    """Waits up to ``secs`` for every task to end; True if they did (or a failure/signal needs attention)."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if all(t.process.poll() is not None for t in tasks):
            return True
        if check is not None and (check.signum is not None or any(t.process.poll() not in (None, 0) for t in tasks)):
            return False
        time.sleep(0.1)
    if check is not None:
        left = ", ".join(t.name for t in tasks if t.process.poll() is None)
        raise RunnerError(f"the workers are done but {left} did not end within {secs:.0f} s; they were stopped")
    return True


def _signal_all(tasks: list[ChildTask], signum: int) -> None:
    for t in tasks:
        if t.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                t.process.send_signal(signum)


def _end_all(tasks: list[ChildTask], grace: float) -> None:
    """SIGTERM to the tasks still running, SIGKILL to those still there after ``grace`` seconds; then reaps all."""
    _signal_all(tasks, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(t.process.poll() is None for t in tasks):
        time.sleep(0.05)
    _signal_all(tasks, signal.SIGKILL)
    for t in tasks:
        t.process.wait()
