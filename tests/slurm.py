"""A one-node SLURM cluster on 127.0.0.1 from Debian's packages (slurmctld, slurmd, slurm-client, munge), started
the way an administrator starts one: a slurm.conf, a munge key, then munged, slurmctld and slurmd, here in the
foreground as children of the test process, so stopping them is a terminate and a wait.

No cgroups (``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``) and no accounting database, so it runs
in a container as root. ``SLURM_CONF`` points every client (sbatch, srun, squeue, scancel, and submitit's calls of
them) at it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")
KILL_WAIT = 10  # seconds between SLURM's SIGTERM and its SIGKILL (scancel, requeue, preemption)


def unavailable() -> str | None:
    """Why the cluster can't start here, or None."""
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None
               and not Path("/usr/sbin", name).exists()]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}); .ci/run installs Debian's slurmctld, " \
               f"slurmd, slurm-client and munge with apt-get"
    if os.geteuid() != 0:
        return "the one-node SLURM cluster runs its daemons as root; run the tests as root"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """The running cluster: ``env`` for its clients, ``stop()`` ends every job and daemon."""

    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        ctld_port, slurmd_port = _free_ports(2)
        for name in ("state", "spool", "log"):
            (root / name).mkdir(parents=True, exist_ok=True)
        self.munge_socket = root / "munge.socket"
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf = root / "slurm.conf"
        self.conf.write_text("\n".join([
            "ClusterName=runner-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
            f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill", "MpiDefault=none", "ReturnToService=2",
            f"KillWait={KILL_WAIT}", "MinJobAge=600",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
        ]) + "\n")
        self.env = {"SLURM_CONF": str(self.conf)}
        started = time.monotonic()
        self._start(["munged", "-F", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                     f"--pid-file={root}/munged.pid", f"--log-file={root}/log/munged.log",
                     f"--seed-file={root}/munge.seed"])
        self._wait(lambda: self.munge_socket.exists(), "munged made no socket", "munged.log")
        self._start(["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._start(["slurmd", "-D", "-c", "-f", str(self.conf), "-N", self.node])
        self._wait(self.idle, "the node did not come up idle", "slurmctld.log")
        self.startup_secs = time.monotonic() - started

    def _start(self, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{argv[0]}.out", "w")
        self.procs.append(subprocess.Popen([_exe(argv[0]), *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **self.env}))

    def _wait(self, ready, what: str, log: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.2)
        self.stop()
        tail = (self.root / "log" / log).read_text()[-2000:] if (self.root / "log" / log).exists() else ""
        raise RuntimeError(f"the SLURM test cluster did not start: {what}\n{tail}")

    def run(self, *argv: str, check: bool = True, unset: tuple[str, ...] = (), **kwargs) -> subprocess.CompletedProcess:
        env = {k: v for k, v in {**os.environ, **self.env}.items() if k not in unset}
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, env=env, **kwargs)

    def idle(self) -> bool:
        out = self.run("sinfo", "-h", "-o", "%T", check=False)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def jobs(self) -> list[dict]:
        """The queue: [{id, state, name}], array tasks as JOB_TASK."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%j").stdout
        return [dict(zip(("id", "state", "name"), line.split("|"))) for line in out.splitlines() if line]

    def state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "UNKNOWN")

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; queue: {self.jobs()}")

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs):
            self.run("scancel", "--full", "--user=root", check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
