"""Training across machines on TensorFlow's distributed runtime: between-graph replication with ps and worker
tasks, as the "Distributed TensorFlow" guide and tf_cnn_benchmarks' --job_name/--ps_hosts/--worker_hosts.

Every task runs the same command (``hardware=cluster``) and finds its role from the environment through
TensorFlow's cluster resolvers: ``TF_CONFIG`` (TFConfigClusterResolver) or a SLURM job step
(SlurmClusterResolver: the first ``hardware.ps`` tasks are ps, the rest workers). Worker 0 is the chief: it alone
initializes, restores and writes the run dir. A ps task serves variables until every worker says it is done; an
``evaluator`` task (TF_CONFIG only) evaluates each new checkpoint of the chief until the last one.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from runner.errors import ConfigError

log = logging.getLogger("runner")

CLUSTER_HARDWARE = ("cluster", "local_cluster")
LAUNCHED_ENV = "RUNNER_LAUNCHED_BY"  # set by local_cluster in its tasks: the launcher owns the run dir
ROLES = ("ps", "worker", "evaluator")


def role_from_env(ps: int, resolver: str = "auto") -> tuple[str, int]:
    """(task type, index) of this process, read from the environment without TensorFlow."""
    use = _resolver_name(resolver)
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


def _resolver_name(resolver: str) -> str:
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


def writes_run_dir(hardware: str, ps: int, resolver: str) -> bool:
    """Whether this process owns the run dir (its lock, saved config, checkpoints): every process that is not a
    cluster task, and the chief of a cluster started by hand. local_cluster's tasks leave it to their launcher."""
    if hardware != "cluster":
        return True
    if LAUNCHED_ENV in os.environ:
        return False
    return role_from_env(ps, resolver) == ("worker", 0)


@dataclass
class Replicas:
    """This worker's place in the cluster: variables, global step and moving averages on the ps tasks (spread by
    size), every other op on this worker and its towers."""

    cluster: object  # tf.train.ClusterSpec
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
        import tensorflow as tf

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
    import numpy as np
    import tensorflow as tf

    try:
        shape = tf.TensorShape(op.get_attr("shape"))
        dtype = tf.as_dtype(op.get_attr("dtype"))
    except ValueError:
        return 0
    if not shape.is_fully_defined():
        return 0
    return int(np.prod(shape.as_list(), dtype=np.int64)) * dtype.size


@dataclass
class Resolved:
    cluster: object  # tf.train.ClusterSpec
    role: str
    index: int


def resolve(resolver: str, ps: int, port_base: int, device_type: str) -> Resolved:
    """The cluster and this task's role, from TensorFlow's cluster resolvers."""
    import tensorflow as tf

    resolvers = tf.distribute.cluster_resolver
    if _resolver_name(resolver) == "tf_config":
        r = resolvers.TFConfigClusterResolver()
        cluster = r.cluster_spec()
        role, index = r.task_type, int(r.task_id or 0)
    else:
        tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 0)
        if tasks <= ps:
            raise ConfigError(f"hardware.ps={ps} but this SLURM job step has {tasks} task(s): run at least "
                              f"{ps + 1} (srun -n), one per process; the first {ps} are ps, the rest workers")
        gpu = device_type == "gpu"
        r = resolvers.SlurmClusterResolver(jobs={"ps": ps, "worker": tasks - ps}, port_base=port_base,
                                           gpus_per_node=None if gpu else 64, gpus_per_task=None if gpu else 1,
                                           auto_set_gpu=gpu)
        cluster = r.cluster_spec()
        role, index = r.task_type, int(r.task_id)
    jobs = cluster.as_dict()
    if "worker" not in jobs or "ps" not in jobs:
        raise ConfigError(f"the cluster needs ps and worker tasks; it has {', '.join(jobs) or 'none'}")
    if role not in ROLES:
        raise ConfigError(f"task type {role!r}: runner's roles are {', '.join(ROLES)} (worker 0 is the chief)")
    return Resolved(cluster, role, index)


def server(resolved: Resolved, config):
    """This task's gRPC server; the session of a worker runs on its target."""
    import tensorflow as tf

    return tf.distribute.Server(resolved.cluster, job_name=resolved.role, task_index=resolved.index,
                                config=config, start=True)


def wait_for_cluster(resolved: Resolved, secs: float) -> None:
    """Waits until every ps and worker task accepts connections, so no task's first call meets a server that is
    not up yet (gRPC would then hold the failure for its back-off time)."""
    import socket
    import time

    from runner.signals import StopSignals

    addresses = [a for job in ("ps", "worker") for a in resolved.cluster.job_tasks(job)]
    deadline = time.monotonic() + secs
    with StopSignals() as stop:
        for address in addresses:
            host, port = address.rsplit(":", 1)
            while True:
                stop.check()
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise ConfigError(f"cluster task at {address} did not answer within {secs:.0f} s; start "
                                          f"every task (the same command with its TF_CONFIG) or check the "
                                          f"addresses") from None
                    time.sleep(0.2)


def _done_queues(cluster):
    """One queue per ps task, shared by name, in which each worker leaves a token when it is done."""
    import tensorflow as tf

    queues = []
    for i in range(cluster.num_tasks("ps")):
        with tf.device(f"/job:ps/task:{i}"):
            queues.append(tf.queue.FIFOQueue(cluster.num_tasks("worker"), tf.int32, shared_name=f"runner_done_{i}"))
    return queues


def tell_ps_done(resolved: Resolved, target: str) -> None:
    """A worker's last act: a token in every ps task's done queue."""
    import tensorflow as tf

    with tf.Graph().as_default():
        enqueues = [q.enqueue(resolved.index) for q in _done_queues(resolved.cluster)]
        only = tf.compat.v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{resolved.index}"])
        with tf.compat.v1.Session(target, config=only) as sess:
            sess.run(enqueues)


def serve(resolved: Resolved, srv) -> None:
    """A ps task: serves variables until every worker has left its token (checking for signals every second)."""
    import tensorflow as tf

    from runner.signals import StopSignals

    v1 = tf.compat.v1
    log.info("ps task %d serving on %s", resolved.index, resolved.cluster.task_address("ps", resolved.index))
    with tf.Graph().as_default():
        queue = _done_queues(resolved.cluster)[resolved.index]
        take = queue.dequeue()
        # Only its own devices: a session that looked for the workers' would reach for them before they are up,
        # and gRPC would then hold those failures for its back-off time.
        only = v1.ConfigProto(device_filters=[f"/job:ps/task:{resolved.index}"])
        with v1.Session(srv.target, config=only) as sess, StopSignals() as stop:
            left = resolved.cluster.num_tasks("worker")
            while left:
                stop.check()
                try:
                    sess.run(take, options=v1.RunOptions(timeout_in_ms=1000))
                    left -= 1
                except tf.errors.DeadlineExceededError:
                    continue
    log.info("ps task %d: every worker is done", resolved.index)
