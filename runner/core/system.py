"""What this machine gives the process: its CPUs (a SLURM allocation or an affinity mask counted), the CPU's model
and flags, and free memory. No TensorFlow here: the launcher of a local cluster and the config checks read it too."""
from __future__ import annotations

import contextlib
import os
import platform
import socket
from pathlib import Path


def cores_given() -> int | None:
    """The CPUs this process was given, when fewer than the machine's: a SLURM job's ``--cpus-per-task``, or a CPU
    affinity mask (taskset, cgroups). TensorFlow would otherwise size its thread pools to the whole machine."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return count if count < (os.cpu_count() or count) else None


def cores() -> int:
    """The CPUs this process may run on: those it was given (:func:`cores_given`), else the machine's."""
    return cores_given() or os.cpu_count() or 1


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in /proc/cpuinfo (None where it can't be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name, for the figures measured on it."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str] | None:
    """The CPU's instruction-set flags (None where /proc/cpuinfo can't tell)."""
    flags = _cpuinfo("flags")
    return None if flags is None else set(flags.split())


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable: free memory plus what the page cache gives up)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def end_with_parent() -> None:
    """In a child process, before it runs: SIGTERM when the process that started it dies, even by SIGKILL (Linux
    prctl PR_SET_PDEATHSIG). Elsewhere nothing."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)



def pin_process(cpus: set[int]) -> None:
    """Runs this process, each of its threads and any it starts later, on ``cpus`` alone (a thread's affinity is its
    own on Linux, so every thread already running is moved too)."""
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


def free_ports(n: int) -> list[int]:
    """n ports that are free now on 127.0.0.1 (held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
