"""A cluster task's role (ps, worker, evaluator; worker 0 the chief), read from the environment without TensorFlow:
``TF_CONFIG`` or a SLURM job step (the first ``hardware.ps`` tasks are ps, the rest workers). Read while the config
is composed (which process writes the run dir's config), so nothing here imports TensorFlow."""
from __future__ import annotations

import json
import os

from runner.core.errors import ConfigError

LAUNCHED_ENV = "RUNNER_LAUNCHED_BY"  # set by local_cluster in its tasks: the launcher owns the run dir
ROLES = ("ps", "worker", "evaluator")


def role_from_env(ps: int, resolver: str = "auto") -> tuple[str, int]:
    """(task type, index) of this process, read from the environment without TensorFlow."""
    use = resolver_name(resolver)
    if use == "tf_config":
        try:
            task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
            role, index = task["type"], int(task["index"])
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise ConfigError(f"TF_CONFIG must be JSON with \"cluster\" and \"task\": {{\"type\": ..., \"index\": "
                              f"...}} ({type(err).__name__}: {err})") from None
    else:
        rank = int(os.environ["SLURM_PROCID"])
        role, index = ("ps", rank) if rank < ps else ("worker", rank - ps)
    if role not in ROLES:
        raise ConfigError(f"task type {role!r} in TF_CONFIG: runner's roles are {', '.join(ROLES)} (worker 0 is the "
                          f"chief)")
    return role, index


def resolver_name(resolver: str) -> str:
    if resolver == "auto":
        if "TF_CONFIG" in os.environ:
            return "tf_config"
        if "SLURM_PROCID" in os.environ:
            return "slurm"
        raise ConfigError("hardware=cluster needs its cluster in the environment: TF_CONFIG (JSON with the cluster's "
                          "ps and worker addresses and this task) or a SLURM job step (srun); to try it on this "
                          "machine use hardware=local_cluster")
    if resolver == "tf_config" and "TF_CONFIG" not in os.environ:
        raise ConfigError("hardware.resolver=tf_config but TF_CONFIG is not set")
    if resolver == "slurm" and "SLURM_PROCID" not in os.environ:
        raise ConfigError("hardware.resolver=slurm but this is not a SLURM job step (no SLURM_PROCID); run it "
                          "with srun")
    return resolver


def writes_run_dir(processes: str, ps: int, resolver: str) -> bool:
    """Whether this process owns the run dir (its lock, saved config, checkpoints): every process that is not a
    cluster task (its hardware schema's ``processes`` is not ``task``), and the chief of a cluster started by hand.
    local_cluster's tasks leave it to their launcher."""
    if processes != "task":
        return True
    if LAUNCHED_ENV in os.environ:
        return False
    return role_from_env(ps, resolver) == ("worker", 0)
