"""hardware=cluster: one task of the cluster, by its role. A ps serves variables until every worker is done; a
worker trains its shard (the chief owning the run dir: its lock, resume check and history); an evaluator evaluates
the chief's checkpoints as they appear, until the last one.

The role is read without TensorFlow, and each role checks what needs none before TensorFlow loads (quietly, by
runner.core.tfload): the cluster's servers and the run are imported after that.
"""
from __future__ import annotations

import logging
import os

from omegaconf import DictConfig

from runner.config.checks import group_schema
from runner.config.hydra import settings
from runner.core.errors import ConfigError
from runner.core.tfload import load_tensorflow
from runner.distributed.data_service import input_service
from runner.distributed.roles import LAUNCHED_ENV, role_from_env, writes_run_dir
from runner.run.data import prepared_dataset
from runner.run.invocation import Invocation
from runner.run.setup import training_setup


def run_task(cfg: DictConfig, run_dir: str, invocation: Invocation) -> dict | None:
    """This process's task of the cluster; a worker returns what training returns (the chief its summary)."""
    hardware = cfg.hardware
    role, index = role_from_env(hardware.ps, hardware.resolver)
    if LAUNCHED_ENV in os.environ:
        _console_only()
    if role == "ps":
        load_tensorflow(cfg.verbose, hardware.xla)
        return _serve(cfg)
    if role == "evaluator":
        dataset = prepared_dataset(cfg)
        from runner.run.runs import eval_run  # TensorFlow, loaded by prepared_dataset

        return eval_run(cfg, run_dir, dataset, once=False, until_step=cfg.max_steps, invocation=invocation)
    owner = writes_run_dir(group_schema(cfg, "hardware").processes, hardware.ps, hardware.resolver)
    with training_setup(cfg, run_dir, owner) as (dataset, changed), input_service(cfg, run_dir) as cfg:
        return _work(cfg, run_dir, dataset, role, index, changed, invocation)


def _console_only() -> None:
    """A task of local_cluster logs to its console only: its launcher relays the lines and keeps the run's log."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def _serve(cfg: DictConfig) -> None:
    from runner.distributed import cluster
    from runner.run.build import placement  # TensorFlow, loaded quietly by the caller

    hardware = cfg.hardware
    resolved = cluster.resolve(hardware.resolver, hardware.ps, hardware.port_base, hardware.device_type)
    cluster.serve(resolved, cluster.server(resolved, placement(settings(cfg).hardware).session_config))


def _work(cfg: DictConfig, run_dir: str, dataset, role: str, index: int, changed: dict | None,
          invocation: Invocation) -> dict | None:
    """A worker: its server started on the placement its parts use, the cluster waited for, training, then a word
    to every ps that it is done."""
    from runner.distributed import cluster
    from runner.engine.replicas import Replicas
    from runner.engine.session import SessionTarget
    from runner.engine.topology import Topology
    from runner.run.build import placement  # TensorFlow, loaded by prepared_dataset
    from runner.run.runs import train_run

    hardware = cfg.hardware
    resolved = cluster.resolve(hardware.resolver, hardware.ps, hardware.port_base, hardware.device_type)
    if (resolved.role, resolved.index) != (role, index):
        raise ConfigError(f"the cluster resolver says this task is {resolved.role} {resolved.index}, the "
                          f"environment {role} {index}; check TF_CONFIG or hardware.ps")
    replicas = Replicas(resolved.cluster, index, hardware.sync)
    placed = placement(settings(cfg).hardware, invocation.parallel_jobs, replicas)
    server = cluster.server(resolved, placed.session_config)
    cluster.wait_for_cluster(resolved, hardware.wait_secs)
    target = SessionTarget(server.target, is_chief=replicas.is_chief, wait_secs=hardware.wait_secs)
    out = train_run(cfg, run_dir, dataset, changed, invocation, Topology(placed, replicas, target))
    cluster.tell_ps_done(resolved, server.target)
    return out
