"""pipeline.service: the training batches made by tf.data service workers, real dispatcher and worker processes on
127.0.0.1 (runner.distributed.data_service)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runner.core.errors import RunnerError
from runner.core.system import free_ports
from runner.distributed.data_service import check_reachable
from tests.helpers import TINY, option, run_cli, stop_when, user_env

RUN = ["pipeline=tf_data", *TINY, "optimizer.lr=0.1", "log_every=100", "eval_splits=[test]"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/stat").read_text()


def _gone(pids: list[int], secs: float = 15) -> bool:
    """Every process of ``pids`` has ended within ``secs`` (a service process ends with its run, on the signal the
    run's end sends it)."""
    deadline = time.monotonic() + secs
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _worker_pids(out: str) -> list[int]:
    found = re.search(r"worker process\(es\) \(pids ([\d, ]+)\)", out)
    assert found, out[-2000:]
    return [int(p) for p in found.group(1).split(", ")]


def test_a_run_with_a_local_service_trains_and_leaves_no_process(tmp_path):
    """As the docs show it, in an empty folder (one worker by default; two in the epoch test below)."""
    proc = run_cli(*RUN, "pipeline.service=local", "max_steps=200", "checkpoint_every=200", cwd=tmp_path,
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    started = re.search(r"a tf.data service dispatcher at 127\.0\.0\.1:\d+ \(pid (\d+)\) and 1 worker process",
                        proc.stdout)
    assert started, proc.stdout[-3000:]
    said = "Input: the training batches (read, decode, preprocess, batch) are made by the tf.data service at grpc://"
    assert said in proc.stdout
    assert re.search(r"Building: dataset=digits pipeline=tf_data\(training batches read, decoded, preprocessed and "
                     r"batched by the tf.data service at grpc://127\.0\.0\.1:\d+\) model=mlp", proc.stdout)
    precision = float(re.search(r"Test Data Eval:\n.*Precision @ 1: ([\d.]+)", proc.stdout).group(1))
    assert precision > 0.5  # chance is 0.1
    assert "Num examples: 300 " in proc.stdout  # the eval in this process, every test example once
    pids = [int(started.group(1)), *_worker_pids(proc.stdout)]
    assert not any(_alive(p) for p in pids)
    assert proc.stdout.rstrip().splitlines()[-1].startswith("Results in ")  # the service's own last lines unsaid


@pytest.mark.slow  # towers on a service: the local cluster's test shares one job too
def test_towers_share_one_service_job(tmp_path):
    """Two towers, each a consumer of the run's one job: each step takes a batch of the job for each tower."""
    proc = run_cli(*RUN, "hardware=cpu2", "pipeline.service=local", "max_steps=200", "checkpoint_every=200",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trainer=towers" in proc.stdout and re.search(r"job runner-[0-9a-f]{12} \(distributed_epoch\)", proc.stdout)
    precision = float(re.search(r"Test Data Eval:\n.*Precision @ 1: ([\d.]+)", proc.stdout).group(1))
    assert precision > 0.5
    assert not any(_alive(p) for p in _worker_pids(proc.stdout))


@pytest.mark.slow  # six runs of 1,000 steps on the default data
def test_a_run_on_the_service_learns_as_one_in_process(tmp_path):
    """The same runs with their batches from a local service and from their own process, over three seeds: the
    precisions are not told apart from seed noise (the served order is the service's: each epoch's shuffle is drawn
    anew, and the dispatcher hands out the files), by the reports' own test."""
    from runner.core.stats import compare

    args = ["pipeline=tf_data", "max_steps=1000", "log_every=500", "checkpoint_every=1000", "eval_splits=[test]"]
    precision: dict[str, dict[int, float]] = {"alone": {}, "served": {}}
    for seed in (1, 2, 3):
        for name, service in (("alone", []), ("served", ["pipeline.service=local"])):
            run_dir = tmp_path / f"{name}{seed}"
            proc = run_cli(*args, *service, f"seed={seed}", f"run_dir={run_dir}", cwd=tmp_path, timeout=600)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            precision[name][seed] = json.loads((run_dir / "summary.json").read_text())["final_precision"]["test"]
    assert min(precision["alone"].values()) > 0.7 and min(precision["served"].values()) > 0.7, precision  # chance: 0.1
    told = compare(precision["served"], precision["alone"])
    assert not told.distinguishable, (precision, told)


@pytest.mark.slow  # a signal to a run whose workers are its own
def test_a_signal_to_the_trainer_stops_its_local_workers_too(tmp_path):
    args = [*RUN, "pipeline.service=local", "pipeline.service_workers=2", "max_steps=1000000",
            "checkpoint_every=100000"]
    stopped = stop_when(args, "Step 200: ", signal.SIGTERM, cwd=tmp_path)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    assert re.search(r"SIGTERM at step \d+: checkpoint saved in", stopped.stdout)
    assert not any(_alive(p) for p in _worker_pids(stopped.stdout))


@pytest.mark.slow  # three or four processes loading TensorFlow; make test runs the service as the docs show it
@pytest.mark.parametrize("workers", [1, 2])  # two: where epochs could overlap
def test_distributed_epoch_gives_each_example_once_an_epoch(tiny_digits, workers):
    import tensorflow as tf

    from runner.distributed.data_service import local_service
    from runner.pipelines import PIPELINES

    def first_epoch(service: str | None) -> list[str]:
        config = option("pipeline", "tf_data", service=service, job_name="epoch", shuffle_buffer=500)
        graph = tf.Graph()
        with graph.as_default():
            batch = PIPELINES.get("tf_data")(config, tiny_digits, seed=0).build("train", 50, training=True)
            with tf.compat.v1.Session(graph=graph) as sess:
                batch.on_session(sess)
                n = tiny_digits.num_examples("train")
                images = np.concatenate([sess.run(batch.images) for _ in range(n // 50)])
        return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]

    with local_service(workers) as address:
        served = first_epoch(address)
    alone = first_epoch(None)
    assert len(served) == len(set(served)) == tiny_digits.num_examples("train")  # each example once
    assert set(served) == set(alone)  # the same examples as in this process, in another order


def test_a_dispatcher_that_does_not_answer_is_named_within_the_wait():
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(RunnerError, match=rf"no tf.data service dispatcher answers at 127\.0\.0\.1:{port} .*"
                                          rf"python -m runner.service dispatcher --port {port}"):
        check_reachable(f"grpc://127.0.0.1:{port}", wait_secs=1.0)
    assert time.monotonic() - started < 5


@pytest.mark.slow  # a local cluster of two workers and a ps, and a service of two workers
def test_a_local_cluster_shares_one_service_job_and_leaves_no_process(tmp_path):
    proc = run_cli(*RUN, "hardware=local_cluster", "hardware.workers=2", "pipeline.service=local",
                   "pipeline.service_workers=2", "max_steps=200", "checkpoint_every=200", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    said = re.search(r"a tf.data service dispatcher at (127\.0\.0\.1:\d+) \(pid (\d+)\) and 2 input worker\(s\) "
                     r"\(pids (\d+), (\d+)\)", proc.stdout)
    assert said, proc.stdout[-3000:]
    found = re.findall(r"\[worker (\d)\] Input: .* tf.data service at grpc://(\S+), job (\S+)", proc.stdout)
    assert sorted(w for w, _, _ in found) == ["0", "1"]
    assert {address for _, address, _ in found} == {said.group(1)}
    assert len({job for _, _, job in found}) == 1  # both worker tasks read from one job
    precision = float(re.search(r"Test Data Eval:\n.*Precision @ 1: ([\d.]+)", proc.stdout).group(1))
    assert precision > 0.5
    assert not any(_alive(int(pid)) for pid in said.groups()[1:])


def test_a_service_address_that_is_not_grpc_host_port_is_refused(tmp_path):
    proc = run_cli(*RUN, "pipeline.service=127.0.0.1:5000", "max_steps=10", cwd=tmp_path)
    assert proc.returncode == 2
    assert "pipeline.service=127.0.0.1:5000: give null, local, or a dispatcher's address as grpc://HOST:PORT" in \
        proc.stdout
    assert not (tmp_path / "outputs").exists()  # refused at compose time


@pytest.mark.parametrize("args,said", [
    (["mode=bench", "pipeline.service=local"], "mode=bench measures the input in this process"),
    (["hardware=local_cluster", "pipeline.service=grpc://127.0.0.1:5050"],
     "the local cluster's tasks run in a network of their own"),
    (["hardware=cluster", "pipeline.service=local"], "each task would start a service of its own"),
])
def test_a_service_where_it_cannot_serve_is_refused(tmp_path, args, said):
    proc = run_cli(*RUN, *args, cwd=tmp_path)
    assert proc.returncode == 2 and said in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "outputs").exists()


def test_a_dispatcher_on_a_port_in_use_is_named():
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "runner.service", "dispatcher", "--port", str(port)],
                              capture_output=True, text=True, timeout=120, env=user_env())
    assert proc.returncode == 2
    assert f"error: port {port} is in use" in proc.stderr


@pytest.mark.slow  # three processes as a user starts them on other machines, then a run
def test_a_run_reads_from_a_dispatcher_and_worker_started_by_hand(tmp_path):
    """The docs' commands as typed: a dispatcher, a worker, then a run given the dispatcher's address."""
    (port,) = free_ports(1)
    service = [sys.executable, "-m", "runner.service"]
    roles = [subprocess.Popen([*service, "dispatcher", "--port", str(port)], env=user_env()),
             subprocess.Popen([*service, "worker", "--dispatcher", f"127.0.0.1:{port}"], env=user_env())]
    try:
        proc = run_cli(*RUN, f"pipeline.service=grpc://127.0.0.1:{port}", "max_steps=200", "checkpoint_every=200",
                       cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"made by the tf.data service at grpc://127.0.0.1:{port}, job runner-" in proc.stdout
        assert all(role.poll() is None for role in roles)  # a service of its own: the run leaves it running
    finally:
        for role in roles:
            role.send_signal(signal.SIGTERM)
        for role in roles:
            assert role.wait(timeout=60) == 0


@pytest.mark.slow  # a dispatcher killed and started again while a run reads from it
def test_a_dispatcher_with_a_work_dir_restarted_mid_run_lets_the_run_go_on(tmp_path):
    (port,) = free_ports(1)
    service = [sys.executable, "-m", "runner.service"]
    dispatcher = [*service, "dispatcher", "--port", str(port), "--work-dir", str(tmp_path / "state")]
    roles = [subprocess.Popen(dispatcher, env=user_env()),
             subprocess.Popen([*service, "worker", "--dispatcher", f"127.0.0.1:{port}"], env=user_env())]
    run = subprocess.Popen([sys.executable, "-m", "runner", *RUN, f"pipeline.service=grpc://127.0.0.1:{port}",
                            "max_steps=100000000", "checkpoint_every=100000000"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env())
    try:
        killed_at, lines = None, []
        for line in run.stdout:
            lines.append(line)
            step = re.match(r"Step (\d+): ", line)
            if step and killed_at is None and int(step.group(1)) >= 500:
                roles[0].kill()  # the dispatcher, at once
                roles[0].wait()
                killed_at = int(step.group(1))
                roles[0] = subprocess.Popen(dispatcher, env=user_env())  # the same port, the same state
            elif step and killed_at is not None and int(step.group(1)) >= killed_at + 1000:
                run.send_signal(signal.SIGTERM)
                break
        lines.append(run.stdout.read())
        out = "".join(lines)
        assert run.wait(timeout=120) == 128 + signal.SIGTERM, out[-3000:]
        assert killed_at is not None and re.search(r"SIGTERM at step \d+: checkpoint saved in", out), out[-3000:]
    finally:
        run.kill()
        for role in roles:
            role.send_signal(signal.SIGTERM)
        for role in roles:
            role.wait(timeout=60)


@pytest.mark.slow  # a dispatcher killed for good: a minute of waiting for it, then the stop
def test_a_dispatcher_killed_for_good_stops_the_run_within_a_bounded_wait(tmp_path):
    (port,) = free_ports(1)
    service = [sys.executable, "-m", "runner.service"]
    roles = [subprocess.Popen([*service, "dispatcher", "--port", str(port)], env=user_env()),
             subprocess.Popen([*service, "worker", "--dispatcher", f"127.0.0.1:{port}"], env=user_env())]
    run = subprocess.Popen([sys.executable, "-m", "runner", *RUN, f"pipeline.service=grpc://127.0.0.1:{port}",
                            "max_steps=100000000", "checkpoint_every=200"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env())
    try:
        lines = []
        for line in run.stdout:
            lines.append(line)
            if re.match(r"Step (\d+): ", line) and int(line.split()[1].rstrip(":")) >= 400:
                roles[0].kill()
                killed = time.monotonic()
                break
        lines.append(run.stdout.read())
        out = "".join(lines)
        code = run.wait(timeout=180)
        took = time.monotonic() - killed
    finally:
        run.kill()
        for role in roles:
            role.kill()
            role.wait()
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert re.search(r"the tf.data service dispatcher at 127\.0\.0\.1:\d+ has not answered for 60 s; start it again "
                     r"\(with its --work-dir it keeps its jobs\) and rerun the same command to resume: stopping the "
                     r"run", out), out[-3000:]
    assert took < 60 + 30 + 20  # the wait, then at most the grace for a step that never ends
    assert list(tmp_path.glob("outputs/*/*/checkpoints/model.ckpt-*.index"))  # the checkpoints before it are kept


@pytest.mark.slow  # one of two local workers killed mid-run
def test_a_local_worker_killed_mid_run_stops_the_run_and_a_rerun_resumes(tmp_path):
    """tf.data service waits for a lost worker's share of the epoch, so the run stops (documented), keeping its
    checkpoints, and the same command resumes it with a new service."""
    args = [*RUN, "pipeline.service=local", "pipeline.service_workers=2", "max_steps=1000000", "checkpoint_every=100",
            "run_dir=runs/served"]
    holder: dict = {}
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=user_env())
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "worker process(es) (pids" in line:
            holder["pids"] = _worker_pids(line)
        if line.startswith("Step 300: "):
            os.kill(holder["pids"][0], signal.SIGKILL)
            break
    lines.append(proc.stdout.read())
    out = "".join(lines)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, out[-3000:]
    assert f"the tf.data service worker {holder['pids'][0]} ended (exit status -9); rerun the same command" in out
    assert _gone(holder["pids"])
    from tests.helpers import steps_saved

    saved = steps_saved(tmp_path / "runs" / "served")
    assert saved >= 300
    rerun = run_cli(*[a.replace("max_steps=1000000", f"max_steps={saved + 200}") for a in args], cwd=tmp_path,
                    timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"at step {saved}" in rerun.stdout


@pytest.mark.slow  # a run stopped by its service's last worker ending
def test_the_last_local_worker_killed_stops_the_run_with_a_checkpoint(tmp_path):
    args = [*RUN, "pipeline.service=local", "max_steps=1000000", "checkpoint_every=100000"]
    holder: dict = {}

    def kill_the_worker(line: str) -> bool:
        if "worker process(es) (pids" in line:
            holder["pids"] = _worker_pids(line)
        if line.startswith("Step 200: ") and "pids" in holder:
            os.kill(holder["pids"][0], signal.SIGKILL)
            return True
        return False

    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=user_env())
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_the_worker(line):
            break
    lines.append(proc.stdout.read())
    out = "".join(lines)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, out[-3000:]
    assert re.search(r"the tf.data service worker \d+ ended \(exit status -9\); rerun the same command to resume "
                     r"with a new service: stopping the run", out)
    # The step waiting for a batch that no worker will make cannot finish: the run ends at once, keeping its last
    # checkpoint, as it does when no safe point comes after a signal.
    assert "stopped: SIGTERM, no safe point within 30 s: exiting at once (the last checkpoint is kept)" in out
    assert not any(_alive(p) for p in holder["pids"])


@pytest.mark.slow  # a bench of two arms, three service processes
def test_the_bench_measures_tf_data_on_a_service_of_its_own_workers_beside_a_prediction(tmp_path):
    """As the docs show it: the arm's row, the trainer's CPU per example, the prediction beside the measurement, and
    the service's workers pinned to a CPU of their own while the bench keeps the others."""
    cpus = sorted(os.sched_getaffinity(0))
    pinned = [f"bench.service_cpus=[{cpus[0]}]"] if len(cpus) > 1 else []
    proc = run_cli("mode=bench", "dataset=shapes", "dataset.num_train=500", "dataset.num_test=100", "batch_size=16",
                   "pipeline=tf_data", "bench.pipelines=[tf_data]", "bench.service_workers=[1]", *pinned,
                   "bench.warmup_steps=2", "bench.windows=2", "bench.steps_per_window=3", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = json.loads(next(tmp_path.glob("outputs/*/*/bench.json")).read_text())
    served, in_process = bench["pipelines"]["tf_data_service1"], bench["pipelines"]["tf_data"]
    assert served["service_workers"] == 1 and served["service_cpus"] == ([cpus[0]] if pinned else None)
    for key in ("train_examples_per_sec", "train_cpu_us_per_example", "ratio_to_bound"):
        assert served[key] > 0, key
    assert served["input_wait_share"] is None or 0 <= served["input_wait_share"] <= 1
    predicted = served["predicted"]
    assert predicted["per_worker_examples_per_sec"] == pytest.approx(1e6 / in_process["pipeline_cpu_us_per_example"])
    assert predicted["expected_examples_per_sec"] == min(predicted["limits"].values())
    assert predicted["measured_examples_per_sec"] == served["train_examples_per_sec"]
    assert re.search(r"\ntf_data_service1 +[\d.]+ ", proc.stdout)  # its row of the table
    assert re.search(r"tf_data_service1: 1 worker\(s\).*: predicted [\d,]+ ex/s \(the (input|model|shared CPU) "
                     r"limits; .*measured [\d,]+ .*the trainer's CPU [\d,]+ us per example", proc.stdout)
    if pinned:
        assert f"the service's workers run on CPU(s) {cpus[0]}, this process" in proc.stdout
    assert not any(_alive(p) for p in _worker_pids(proc.stdout))


@pytest.mark.parametrize("args,said", [
    (["bench.service_workers=[0]"], "bench.service_workers=[0]: give worker counts from 1 to 64"),
    (["bench.pipelines=[queue]", "bench.service_workers=[1]"], "add tf_data to bench.pipelines=['queue']"),
    (["bench.service_cpus=[0]"], "bench.service_cpus pins the service's workers: give bench.service_workers too"),
    (["bench.service_workers=[1]", "bench.service_cpus=[4096]"], "bench.service_cpus=[4096]: give some of this "
                                                                  "process's CPUs"),
])
def test_a_service_arm_the_bench_cannot_measure_is_refused(tmp_path, args, said):
    proc = run_cli("mode=bench", *args, cwd=tmp_path)
    assert proc.returncode == 2 and said in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "outputs").exists()
