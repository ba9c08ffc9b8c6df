"""Training across machines: roles from TF_CONFIG and SLURM, between-graph replication equal to one process,
disjoint shards per worker, and local_cluster runs (training, a killed worker, a checkpoint evaluated in one
process)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from runner.cli.app import run
from runner.config.hydra import schema_of, settings
from runner.core.system import free_ports
from runner.distributed import cluster, roles
from runner.engine.graph import build_train_graph
from runner.engine.hooks import FeedHook
from runner.engine.replicas import GreedyBySize, Replicas
from runner.engine.session import SessionTarget, session
from runner.engine.topology import Topology
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch, Shard
from runner.run.build import build_parts, placement
from tests.helpers import ROOT, TINY, compose, noise, option, run_cli

v1 = tf.compat.v1
FAST = [*TINY, "optimizer.lr=0.1", "log_every=100", "checkpoint_every=200", "max_steps=300"]


# ---------------------------------------------------------------------------------------------- roles
def test_tf_config_becomes_the_cluster_spec_and_role(monkeypatch):
    spec = {"ps": ["10.0.0.1:2222", "10.0.0.2:2222"], "worker": ["10.0.0.3:2222", "10.0.0.4:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": "worker", "index": 1}}))
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert roles.role_from_env(ps=1) == ("worker", 1)
    resolved = cluster.resolve("auto", ps=1, port_base=8888, device_type="cpu")
    assert resolved.cluster.as_dict() == spec and (resolved.role, resolved.index) == ("worker", 1)
    processes = schema_of("hardware", "cluster").processes  # asked of the schema, as the run asks it
    assert not roles.writes_run_dir(processes, 1, "auto")  # worker 1 is not the chief
    assert roles.writes_run_dir(schema_of("hardware", "local_cluster").processes, 1, "auto")  # its launcher
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": "worker", "index": 0}}))
    assert roles.writes_run_dir(processes, 1, "auto")


def test_slurm_environment_becomes_the_cluster_spec_and_role(monkeypatch):
    """srun -n 3 over two nodes (2 tasks on node1, 1 on node2) with hardware.ps=1: rank 0 is the ps."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[1-2]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2,1")
    expected = {"ps": ["node1:8888"], "worker": ["node1:8889", "node2:8888"]}
    for rank, role in [(0, ("ps", 0)), (1, ("worker", 0)), (2, ("worker", 1))]:
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        assert roles.role_from_env(ps=1) == role
        resolved = cluster.resolve("auto", ps=1, port_base=8888, device_type="cpu")
        assert resolved.cluster.as_dict() == expected and (resolved.role, resolved.index) == role


def test_a_cluster_without_its_environment_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    out = run_cli("hardware=cluster", *TINY, "max_steps=1")
    assert out.returncode == 2 and "hardware=cluster needs its cluster in the environment" in out.stderr + out.stdout


def test_variables_are_spread_over_the_ps_tasks_by_size():
    strategy = GreedyBySize(2)
    with tf.Graph().as_default():
        big = v1.get_variable("big", [1000, 100])
        small = [v1.get_variable(f"small{i}", [10]) for i in range(3)]
        placed = [strategy(v.op) for v in [big, *small]]
    assert placed == [0, 1, 1, 1] and strategy.loads == [400_000, 120]


# ---------------------------------------------------------------------------------------------- replication
def _servers(workers: int):
    ports = free_ports(1 + workers)
    spec = tf.train.ClusterSpec({"ps": [f"127.0.0.1:{ports[0]}"],
                                 "worker": [f"127.0.0.1:{p}" for p in ports[1:]]})
    ps = tf.distribute.Server(spec, "ps", 0, config=v1.ConfigProto(inter_op_parallelism_threads=16))
    return spec, ps, [tf.distribute.Server(spec, "worker", i) for i in range(workers)]


def _constant(x, y):
    return lambda: [Batch(tf.constant(x), tf.constant(y), len(y))]


def test_one_sync_step_of_two_workers_with_batch_b_equals_one_process_with_batch_2b(tiny_digits):
    cfg = compose(*TINY, "hardware=cluster", "optimizer.lr=0.1")
    images, labels = tiny_digits.arrays("train")
    x = tiny_digits.preprocess_np(images[:64], False, np.random.default_rng(0))
    y = labels[:64]
    spec, _ps, servers = _servers(2)
    after: dict = {}
    before: dict = {}
    errors: list = []

    def worker(i: int):
        try:
            replicas = Replicas(spec, i, sync=True)
            run = settings(cfg)
            parts = build_parts(run, tiny_digits, Topology(placement(run.hardware, replicas=replicas), replicas))
            tg = build_train_graph(parts, 32, 0, None, _constant(x[32 * i:32 * (i + 1)], y[32 * i:32 * (i + 1)]))
            with tg.graph.as_default():
                variables = v1.trainable_variables()
            with session(tg.graph, parts.session_config, tg.batches, hooks=tg.hooks(i == 0),
                         task=SessionTarget(servers[i].target, is_chief=i == 0)) as (sess, _):
                if i == 0:
                    before.update(zip([v.op.name for v in variables], sess.run(variables)))
                sess.run(tg.train_op)
                if i == 0:
                    after.update(zip([v.op.name for v in variables], sess.run(variables)))
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    parts = build_parts(settings(compose(*TINY, "optimizer.lr=0.1")), tiny_digits)
    tg = build_train_graph(parts, 64, 0, None, _constant(x, y))
    with tg.graph.as_default():
        variables = v1.trainable_variables()
    with session(tg.graph, parts.session_config, tg.batches) as (sess, _):
        def load(step_context):
            for v in variables:
                v.load(before[v.op.name], step_context.session)

        sess.run_step_fn(load)
        sess.run(tg.train_op)
        single = dict(zip([v.op.name for v in variables], sess.run(variables)))
    assert set(single) == set(after) and len(single) == 6  # the MLP's weights and biases
    for name, value in single.items():
        assert not np.allclose(value, before[name]), name  # the step changed it
        np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES.names()))
def test_every_pipeline_gives_two_workers_disjoint_shards_that_cover_the_split(tiny_digits, pipeline):
    """Each worker's shard, over several of its epochs: the two are disjoint and together every example."""
    images, _ = tiny_digits.arrays("train")
    def rows(x):  # an example's identity, whichever op (numpy or TensorFlow) scaled it
        return {bytes(row) for row in np.round(x.reshape(len(x), -1), 4).astype(np.float32)}

    every = rows(tiny_digits.preprocess_np(images, False, None))
    seen = []
    for index in range(2):
        graph = tf.Graph()
        with graph.as_default():
            p = PIPELINES.get(pipeline)(option("pipeline", pipeline), tiny_digits, seed=0, shard=Shard(index, 2))
            batch = p.build("train", 100, training=True)
        got = set()
        with session(graph, None, [batch], hooks=[FeedHook([batch])]) as (sess, _):
            for _ in range(len(images) * 3 // 2 // 100 + 5):  # three epochs of a shard of half the split
                x = sess.run(batch.pull())[0]
                got |= rows(x)
        seen.append(got)
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == every


# ---------------------------------------------------------------------------------------------- local_cluster
def _pids(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"\[(\w+ \d+)\] started \(pid (\d+)", output)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, data_root):
    run_dir = tmp_path_factory.mktemp("cluster")
    out = run_cli("hardware=local_cluster", "hardware.workers=2", "hardware.ps=1", *FAST, f"run_dir={run_dir}",
                  timeout=240, unset=("TF_CPP_MIN_LOG_LEVEL",))  # TensorFlow's log level as a user's shell has it
    return run_dir, out


@pytest.mark.slow  # three processes loading TensorFlow and a run to compare; a two-worker sync step is in make test
def test_local_cluster_trains_the_mlp_into_the_one_process_band(cluster_run, tmp_path):
    run_dir, out = cluster_run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("[worker 1] Step ") for line in lines)  # each task's lines, prefixed by its role
    assert any(line.startswith("[ps 0] ps task 0: every worker is done") for line in lines)
    assert not noise(out.stdout + out.stderr)  # every task loads TensorFlow quietly
    assert "on 127.0.0.1 of a private network (the tasks' alone)" in out.stdout + out.stderr
    pids = _pids(out.stdout)
    assert set(pids) == {"ps 0", "worker 0", "worker 1"} and not any(_alive(p) for p in pids.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] >= 300 and summary["examples_per_step"] == 200  # 2 workers x batch 100 per update
    one = run(compose(*FAST), str(tmp_path / "single"))  # the same run in one process
    assert summary["final_precision"]["test"] > 0.5
    assert abs(summary["final_precision"]["test"] - one["final_precision"]["test"]) < 0.1, (summary, one)
    assert (run_dir / ".hydra" / "config.yaml").exists() and not (run_dir / ".hydra" / "resumes").exists()


@pytest.mark.slow
def test_a_cluster_checkpoint_evaluates_in_one_process(cluster_run):
    run_dir, out = cluster_run
    assert out.returncode == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    result = run_cli("mode=eval", f"run_dir={run_dir}", "hardware=cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((run_dir / "eval.json").read_text())
    assert evaluated["step"] == summary["steps"]
    assert evaluated["results"]["test"]["precision"] == pytest.approx(summary["final_precision"]["test"])


def _start_cluster(run_dir, until: str):
    """A long local_cluster run, once a line starts with ``until``: (process, its lines so far and to come)."""
    proc = subprocess.Popen([sys.executable, "-m", "runner", "hardware=local_cluster", *TINY, "max_steps=1000000",
                             "log_every=20", f"run_dir={run_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any(line.startswith(until) for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.1)
    return proc, lines


@pytest.mark.slow  # four processes loading TensorFlow: ~35 s
def test_a_killed_worker_ends_the_run_with_a_clear_error_and_no_orphans(tmp_path):
    proc, lines = _start_cluster(tmp_path, "[worker 1] Step ")
    pids = _pids("".join(lines))
    os.kill(pids["worker 1"], signal.SIGKILL)
    killed = time.monotonic()
    code = proc.wait(timeout=60)
    took = time.monotonic() - killed
    text = "".join(lines)
    assert code != 0 and "error: worker 1 was killed by SIGKILL" in text, text[-3000:]
    assert took < 15, took
    time.sleep(0.5)
    assert not any(_alive(p) for p in pids.values()), pids


@pytest.mark.slow
def test_an_async_cluster_with_an_evaluator_continues_a_one_process_run(tmp_path):
    first = run_cli(*FAST, "max_steps=200", f"run_dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    out = run_cli("hardware=local_cluster", "hardware.sync=false", "hardware.evaluator=true", "eval_interval_secs=1",
                  *FAST, "max_steps=500", f"run_dir={tmp_path}", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[worker 0] Resuming from" in out.stdout and "at step 200" in out.stdout
    assert re.search(r"\[evaluator 0\] .*precision @ 1 = ", out.stdout)
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["step"] >= 500 and evaluated["results"]["test"]["precision"] > 0.5
    assert not any(_alive(p) for p in _pids(out.stdout).values())


def _listening(pid: int) -> set[int]:
    """The TCP ports listened on in process ``pid``'s network (its /proc/PID/net/tcp and tcp6)."""
    ports = set()
    for name in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A":  # LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.slow
def test_sigterm_to_a_local_cluster_checkpoints_and_stops_every_task(tmp_path):
    proc, lines = _start_cluster(tmp_path, "[worker 0] Step ")
    # The tasks' servers (TensorFlow binds 0.0.0.0) are in a network of their own: listening there, not reachable
    # from this machine's network, even on 127.0.0.1.
    ports = {m[1]: int(m[2]) for m in re.finditer(r"\[(\w+ \d+)\] started \(pid \d+, 127\.0\.0\.1:(\d+)",
                                                  "".join(lines))}
    pids = _pids("".join(lines))
    assert set(ports) == {"ps 0", "worker 0", "worker 1"}, "".join(lines)[-3000:]
    assert "on 127.0.0.1 of a private network" in "".join(lines)
    for task, port in ports.items():
        assert os.readlink(f"/proc/{pids[task]}/ns/net") != os.readlink("/proc/self/ns/net")
        assert port in _listening(pids[task])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    text = "".join(lines)
    assert "every task stopped" in text and list((tmp_path / "checkpoints").glob("model.ckpt-*.index")), text[-3000:]
    time.sleep(0.5)
    assert not any(_alive(p) for p in _pids(text).values())


@pytest.mark.slow  # two local clusters of four tasks
@pytest.mark.parametrize("sync", ["true", "false"])
def test_a_local_cluster_with_two_ps_trains_and_every_task_ends(tmp_path, sync):
    """hardware.ps=2 (variables spread over two ps tasks), sync and async: trains, and each ps hears every worker
    is done (each ps task's session builds its own done queue only)."""
    out = run_cli("hardware=local_cluster", "hardware.ps=2", "hardware.workers=2", f"hardware.sync={sync}", *FAST,
                  "max_steps=200", f"run_dir={tmp_path}", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert "[ps 0] ps task 0: every worker is done" in out.stdout
    assert "[ps 1] ps task 1: every worker is done" in out.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] >= 200
