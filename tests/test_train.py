"""Smoke tier: short runs of every pipeline on the default dataset, checking the run dir; resume; eval; NaN."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from runner.cli.app import run
from runner.core.errors import ConfigError, TrainingError
from runner.core.results import SUMMARY, TrainSummary, columns
from runner.pipelines import PIPELINES
from tests.helpers import ROOT, TINY, compose, run_cli

FAST = [*TINY, "optimizer.lr=0.1", "log_every=50", "checkpoint_every=150"]


@pytest.mark.parametrize("pipeline", PIPELINES.names())
def test_short_run_beats_chance_and_fills_the_run_dir(tmp_path, tiny_digits, pipeline):
    summary = run(compose(*FAST, f"pipeline={pipeline}", "max_steps=300"), str(tmp_path))
    assert summary["steps"] == 300 and summary["pipeline"] == pipeline
    assert summary["final_precision"]["test"] > 0.5, summary["final_precision"]  # chance is 0.1
    assert summary["trainable_parameters"] == 784 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10
    assert summary["examples_per_sec"] > 0 and summary["config"]["pipeline"]["name"] == pipeline
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["steps"] == 300
    assert set(TrainSummary.__annotations__) <= set(written)  # every key runner.core.results names is written
    assert columns(written, SUMMARY) == {  # the sweep report's columns of this run
        **{f"precision_{split}": value for split, value in written["final_precision"].items()},
        "examples_per_sec": written["examples_per_sec"], "train_time_sec": written["wall_time_sec"], "steps": 300}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in lines if "split" in m]
    assert [(m["step"], m["split"], m["num_examples"]) for m in evals] == [
        (150, "train", 1000), (150, "validation", 200), (150, "test", 300),
        (300, "train", 1000), (300, "validation", 200), (300, "test", 300)]
    assert [m["step"] for m in lines if "loss" in m] == [50, 100, 150, 200, 250, 300]
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} >= {"checkpoint", "model.ckpt-300.index"}
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_rerun_resumes_from_the_last_checkpoint_and_eval_mode_reads_it(tmp_path, tiny_digits):
    run(compose(*FAST, "max_steps=150"), str(tmp_path))
    summary = run(compose(*FAST, "max_steps=200"), str(tmp_path))
    assert summary["steps"] == 200 and summary["steps_this_run"] == 50
    # mode=eval reads the run's saved config; here the test writes it as Hydra would.
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(json.dumps(summary["config"]))
    result = run(compose("mode=eval", "eval_splits=[test]"), str(tmp_path))
    assert result["step"] == 200 and result["results"]["test"]["num_examples"] == 300
    assert result["results"]["test"]["precision"] == pytest.approx(summary["final_precision"]["test"])


def test_keeps_only_the_last_checkpoints(tmp_path, tiny_digits):
    run(compose(*TINY, "max_steps=50", "checkpoint_every=10", "keep_checkpoints=2", "eval_splits=[test]"),
        str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == \
        ["model.ckpt-40.index", "model.ckpt-50.index"]


def test_nan_loss_stops_with_a_clear_error(tmp_path, tiny_digits):
    with pytest.raises(TrainingError, match=r"loss is (nan|inf) at step \d+.*optimizer.lr"):
        run(compose(*TINY, "optimizer.lr=1e30", "max_steps=100"), str(tmp_path))


def test_batch_larger_than_the_split_is_refused(tmp_path, tiny_digits):
    with pytest.raises(ConfigError, match="batch_size=5000 is larger than the 1000 training examples"):
        run(compose(*TINY, "batch_size=5000"), str(tmp_path))


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_a_stop_signal_writes_a_checkpoint_and_the_rerun_resumes(tmp_path, tiny_digits, sig):
    args = [*TINY, "pipeline=queue", "log_every=10", "checkpoint_every=100000", f"run_dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args, "max_steps=1000000"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait until training runs
        if line.startswith("Step "):
            break
    time.sleep(0.5)
    proc.send_signal(sig)
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 128 + sig, out
    assert f"stopped: {sig.name} at step" in out and "rerun with run_dir=" in out
    step = int(out.split(f"{sig.name} at step ")[1].split(":")[0])
    assert (tmp_path / "checkpoints" / f"model.ckpt-{step}.index").exists()
    resumed = run(compose(*args[:-1], f"max_steps={step + 20}", "eval_splits=[test]"), str(tmp_path))
    assert resumed["steps"] == step + 20 and resumed["steps_this_run"] == 20


def _lines(proc) -> "queue.Queue[str]":
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _wait_for(lines, text: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"{text!r} not printed; got: {''.join(seen)}")


@pytest.mark.slow  # a training and an evaluator side by side
def test_continuous_eval_follows_new_checkpoints_until_stopped(tmp_path):
    args = [*TINY, "moving_average_decay=0.9999", "log_every=5", "checkpoint_every=5", "eval_splits=[test]",
            f"run_dir={tmp_path}"]
    assert run_cli(*args, "max_steps=5").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "runner", "mode=eval", "eval_once=false", "eval_interval_secs=0.5",
                             f"run_dir={tmp_path}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = _lines(proc)
        _wait_for(lines, "model.ckpt-5 (step 5, moving averages)")
        _wait_for(lines, "precision @ 1 = ")
        run(compose(*args[:-1], "max_steps=10"), str(tmp_path))  # a new checkpoint appears
        _wait_for(lines, "model.ckpt-10 (step 10, moving averages)")
        _wait_for(lines, "precision @ 1 = ")  # the pass is over (a signal would end a pass between batches)
        proc.send_signal(signal.SIGINT)
        _wait_for(lines, "stopped: SIGINT: evaluation of")
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        proc.kill()
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 10
    import tensorflow as tf

    per_file = [[e.step for e in tf.compat.v1.train.summary_iterator(str(f))
                 if any(v.tag == "precision/test" for v in e.summary.value)] for f in (tmp_path / "eval").iterdir()]
    assert [5, 10] in per_file, per_file  # the evaluation's own events, at its checkpoints' steps, beside training's


def test_summaries_at_the_first_step_every_summary_every_steps_and_progress_lines_every_log_every(tmp_path,
                                                                                                  tiny_digits):
    import tensorflow as tf

    summary = run(compose(*TINY, "max_steps=40", "log_every=5", "summary_every=20", "eval_splits=[test]"),
                  str(tmp_path))
    steps = sorted({e.step for f in tmp_path.glob("events.out.tfevents.*")
                    for e in tf.compat.v1.train.summary_iterator(str(f)) if any(v.tag == "loss/total (raw)"
                                                                                 for v in e.summary.value)})
    assert steps == [1, 20, 40]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == list(range(5, 45, 5))
    assert all(m["learning_rate"] == pytest.approx(0.01) for m in lines if "loss" in m)
    assert (summary["pipeline"], summary["dataset"], summary["model"], summary["trainer"]) == \
        ("feed_dict", "digits", "mlp", "single")


def test_evaluation_uses_the_moving_averages_and_eval_moving_average_false_the_raw_variables(tmp_path, tiny_digits):
    """As cifar10_eval: precision @ 1 of the checkpoint's averaged variables; both precisions are recomputed in
    numpy from the checkpoint's tensors, and they differ on a checkpoint whose averages lag the variables."""
    import numpy as np
    import tensorflow as tf

    from runner.engine.checkpoints import latest_checkpoint
    from runner.run.runs import eval_run

    args = [*TINY, "moving_average_decay=0.99", "max_steps=60", "checkpoint_every=60", "log_every=60",
            "eval_splits=[test]", "optimizer.lr=0.1"]
    trained = run(compose(*args), str(tmp_path))
    raw = eval_run(compose(*args, "eval_moving_average=false"), str(tmp_path), tiny_digits, once=True)
    averaged = eval_run(compose(*args), str(tmp_path), tiny_digits, once=True)
    reader = tf.train.load_checkpoint(latest_checkpoint(tmp_path))
    images, labels = tiny_digits.arrays("test")
    x0 = tiny_digits.preprocess_np(np.asarray(images), training=False, rng=None).reshape(len(labels), -1)

    def correct(suffix: str) -> int:
        x = x0
        for layer in ("hidden1", "hidden2", "softmax_linear"):
            x = x @ reader.get_tensor(f"{layer}/weights{suffix}") + reader.get_tensor(f"{layer}/biases{suffix}")
            x = np.maximum(x, 0) if layer != "softmax_linear" else x
        return int((x.argmax(axis=1) == labels).sum())

    with_averages, without = correct("/ExponentialMovingAverage"), correct("")
    assert averaged["results"]["test"]["num_correct"] == with_averages
    assert raw["results"]["test"]["num_correct"] == without
    assert trained["final_precision"]["test"] == averaged["results"]["test"]["precision"]  # training evaluates so too
    assert with_averages != without


def test_a_session_close_that_hangs_holds_up_neither_the_run_nor_the_process_end(tmp_path):
    """tf.data's autotuning thread can hold a session's close up to a minute: close_soon returns within
    CLOSE_WAIT_SECS, and the program (python -m runner, the runner command) then ends at once with its code, its
    output written, while main() called in a process that goes on (here, this one) returns as it is."""
    script = tmp_path / "hang.py"
    script.write_text(
        "import sys, time\n"
        "import runner.cli.app\n"
        "from runner.core.closing import close_soon, still_closing\n"
        "def main():\n"
        "    start = time.monotonic()\n"
        "    close_soon(lambda: time.sleep(120))\n"
        "    print(f'closed after {time.monotonic() - start:.2f} s; still closing: {still_closing()}', flush=True)\n"
        "    print('the last line', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "runner.cli.app.main = main\n"
        "runner.cli.app.program()\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    took = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr[-2000:]
    closed = float(proc.stdout.split("closed after ")[1].split(" s")[0])
    assert 0.4 <= closed < 1.5 and "still closing: True" in proc.stdout
    assert proc.stderr.rstrip().endswith("the last line") and took < 30  # not the 120 s of the close


@pytest.mark.slow  # a 60-step CNN run with a 50,000-example eval (45 s)
def test_a_short_tf_data_run_ends_within_seconds_of_its_last_eval(tmp_path):
    """With tf.data's autotuner on (the default), a run's end is not held up by closing its sessions: the time from
    the last eval line to the process's end, as a user watches it (it was 19-40 s)."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "runner", "dataset=shapes", "pipeline=tf_data",
                             "max_steps=60", "eval_splits=[train,test]"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    last_eval, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if "Precision @ 1" in line:
            last_eval = time.monotonic()
    proc.wait(timeout=60)
    ended = time.monotonic()
    assert proc.returncode == 0, "".join(lines[-30:])
    assert sum("Precision @ 1" in line for line in lines) == 2 and ended - last_eval < 2.0, ended - last_eval
