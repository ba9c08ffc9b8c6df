"""What this machine gives the process: its CPUs (a SLURM allocation or an affinity mask counted) and free memory.
No TensorFlow here: the launcher of a local cluster and the config checks read it too."""
from __future__ import annotations

import os


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
