"""Where a process runs its share of a run: one :class:`Topology`, made once (runner.run.build for one process,
runner.distributed.tasks for a cluster worker) and read by everything that places ops or opens the session."""
from __future__ import annotations

from dataclasses import dataclass

from runner.engine.hardware import Placement
from runner.engine.replicas import Replicas
from runner.engine.session import IN_PROCESS, SessionTarget
from runner.pipelines.base import Shard


@dataclass(frozen=True)
class Topology:
    """The devices, variable device and session config (``placement``); in a cluster worker also its replicas (the
    ps tasks, its index, sync) and its server's session target. One process alone is ``Topology(placement)``."""

    placement: Placement
    replicas: Replicas | None = None
    target: SessionTarget = IN_PROCESS

    @property
    def towers(self) -> list[str]:
        """One device per tower; a worker's own (``/job:worker/task:N/...``)."""
        prefix = self.replicas.worker_device if self.replicas else ""
        return [prefix + d for d in self.placement.devices]

    @property
    def input_device(self) -> str:
        """Where the input pipeline runs: this process's CPU."""
        return (self.replicas.worker_device if self.replicas else "") + "/cpu:0"

    @property
    def shard(self) -> Shard:
        """This worker's share of the training split (all of it in one process)."""
        return Shard(self.replicas.task_index, self.replicas.num_workers) if self.replicas else Shard()

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's checkpoints, summaries and results."""
        return self.target.is_chief
