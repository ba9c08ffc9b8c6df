"""mode=train: in this process (one device or towers), as a task of a cluster, or as the launcher of a local one."""
from __future__ import annotations

from omegaconf import DictConfig

from runner.config.checks import group_schema
from runner.distributed import local_cluster
from runner.distributed.data_service import input_service
from runner.distributed.tasks import run_task
from runner.run.invocation import ALONE, Invocation
from runner.run.setup import training_setup


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> dict | None:
    """Trains to max_steps in run_dir, resuming its last checkpoint; the summary (None in a task that is not the
    chief)."""
    processes = group_schema(cfg, "hardware").processes
    if processes == "launcher":
        return local_cluster.run(cfg, run_dir, invocation)
    if processes == "task":
        return run_task(cfg, run_dir, invocation)
    with training_setup(cfg, run_dir) as (dataset, changed), input_service(cfg, run_dir) as cfg:
        from runner.run.runs import train_run  # TensorFlow, once the checks that need none have passed

        return train_run(cfg, run_dir, dataset, changed, invocation)
