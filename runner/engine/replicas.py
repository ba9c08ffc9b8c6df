"""A cluster worker's placement: variables, global step and moving averages on the ps tasks, spread by size, and
every other op on the worker and its towers (between-graph replication)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf


@dataclass
class Replicas:
    """This worker's place in the cluster: variables, global step and moving averages on the ps tasks (spread by
    size), every other op on this worker and its towers."""

    cluster: Any  # tf.train.ClusterSpec
    task_index: int
    sync: bool

    @property
    def num_workers(self) -> int:
        return self.cluster.num_tasks("worker")

    @property
    def num_ps(self) -> int:
        return self.cluster.num_tasks("ps")

    @property
    def is_chief(self) -> bool:
        return self.task_index == 0

    @property
    def worker_device(self) -> str:
        return f"/job:worker/task:{self.task_index}"

    def device_setter(self):
        return tf.compat.v1.train.replica_device_setter(cluster=self.cluster, worker_device=self.worker_device,
                                                        ps_strategy=GreedyBySize(self.num_ps))


class GreedyBySize:
    """A ps strategy: each variable goes to the ps task holding the fewest bytes so far, so several ps tasks share
    the model's bytes (and the traffic of each step) about evenly. Variables are placed in the order the graph
    makes them, the same on every worker, so every worker computes the same placement."""

    def __init__(self, num_ps: int):
        self.loads = [0] * num_ps

    def __call__(self, op) -> int:
        task = min(range(len(self.loads)), key=self.loads.__getitem__)
        self.loads[task] += variable_bytes(op)
        return task


def variable_bytes(op) -> int:
    """Bytes of the variable an op creates (from its shape and dtype attributes); 0 for other ps ops."""
    try:
        shape = tf.TensorShape(op.get_attr("shape"))
        dtype = tf.as_dtype(op.get_attr("dtype"))
    except ValueError:
        return 0
    if not shape.is_fully_defined():
        return 0
    return int(np.prod(shape.as_list(), dtype=np.int64)) * dtype.size
