"""Training across machines on TensorFlow's distributed runtime: between-graph replication with ps and worker
tasks, as the "Distributed TensorFlow" guide and tf_cnn_benchmarks' --job_name/--ps_hosts/--worker_hosts.

Every task runs the same command (``hardware=cluster``) and finds its role from the environment through
TensorFlow's cluster resolvers: ``TF_CONFIG`` (TFConfigClusterResolver) or a SLURM job step
(SlurmClusterResolver: the first ``hardware.ps`` tasks are ps, the rest workers). Worker 0 is the chief: it alone
initializes, restores and writes the run dir. A ps task serves variables until every worker says it is done; an
``evaluator`` task (TF_CONFIG only) evaluates each new checkpoint of the chief until the last one.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import tensorflow as tf

from runner.core.errors import ConfigError
from runner.core.signals import StopSignals
from runner.distributed.roles import ROLES, resolver_name

log = logging.getLogger("runner")


@dataclass
class Resolved:
    cluster: object  # tf.train.ClusterSpec
    role: str
    index: int


def resolve(resolver: str, ps: int, port_base: int, device_type: str) -> Resolved:
    """The cluster and this task's role, from TensorFlow's cluster resolvers."""
    resolvers = tf.distribute.cluster_resolver
    if resolver_name(resolver) == "tf_config":
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
    """This task's gRPC server; the session of a worker runs on its target. An address it cannot listen on (a port
    in use) is one line naming the task and the address."""
    try:
        return tf.distribute.Server(resolved.cluster, job_name=resolved.role, task_index=resolved.index,
                                    config=config, start=True)
    except tf.errors.OpError:
        address = resolved.cluster.task_address(resolved.role, resolved.index)
        if _in_use(address):
            raise ConfigError(f"{resolved.role} {resolved.index} cannot listen on {address}: the port is in use by "
                              f"another process; free it, or give this task another port (TF_CONFIG, or "
                              f"hardware.port_base under SLURM)") from None
        raise


def _in_use(address: str) -> bool:
    """Whether another process listens on ``address`` (host:port) already."""
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return True
    return False


def wait_for_cluster(resolved: Resolved, secs: float) -> None:
    """Waits until every ps and worker task accepts connections, so no task's first call meets a server that is
    not up yet (gRPC would then hold the failure for its back-off time)."""
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


def _done_queue(cluster, ps: int):
    """ps task ``ps``'s queue, shared by name, in which each worker leaves a token when it is done."""
    with tf.device(f"/job:ps/task:{ps}"):
        return tf.queue.FIFOQueue(cluster.num_tasks("worker"), tf.int32, shared_name=f"runner_done_{ps}")


def tell_ps_done(resolved: Resolved, target: str) -> None:
    """A worker's last act: a token in every ps task's done queue."""
    with tf.Graph().as_default():
        enqueues = [_done_queue(resolved.cluster, i).enqueue(resolved.index)
                    for i in range(resolved.cluster.num_tasks("ps"))]
        only = tf.compat.v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{resolved.index}"])
        with tf.compat.v1.Session(target, config=only) as sess:
            sess.run(enqueues)


def serve(resolved: Resolved, srv) -> None:
    """A ps task: serves variables until every worker has left its token (checking for signals every second)."""
    v1 = tf.compat.v1
    log.info("ps task %d serving on %s", resolved.index, resolved.cluster.task_address("ps", resolved.index))
    with tf.Graph().as_default():
        take = _done_queue(resolved.cluster, resolved.index).dequeue()  # its own only: its session sees no other
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
