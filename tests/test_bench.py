"""mode=bench: the shape of bench.json and the table, on tiny data (numbers are measured, not asserted)."""
import json
import signal

import pytest

from runner.cli.app import run
from tests.helpers import compose, run_cli, stop_when

TINY_BENCH = ["mode=bench", "dataset=shapes", "dataset.num_train=500", "dataset.num_test=100", "batch_size=16",
              "bench.warmup_steps=2", "bench.windows=2", "bench.steps_per_window=3"]


def test_bench_measures_every_pipeline_against_the_bound(tmp_path):
    out = run(compose(*TINY_BENCH, "pipeline=queue", "pipeline.num_threads=2", "bench.stages=false"), str(tmp_path))
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["bound_examples_per_sec"] == out["bound_examples_per_sec"] > 0
    assert list(written["pipelines"]) == ["feed_dict", "preloaded", "queue", "tf_data", "autotune"]
    for name, p in written["pipelines"].items():
        for key in ("pipeline_examples_per_sec", "train_examples_per_sec", "ratio_to_bound", "first_batch_sec",
                    "pipeline_cpu_us_per_example", "train_cpu_us_per_example"):
            assert p[key] > 0, (name, key)
        assert len(p["train_window_examples_per_sec"]) == len(p["bound_window_examples_per_sec"]) == 2
        train, bound = p["train_window_examples_per_sec"], p["bound_window_examples_per_sec"]
        assert p["ratio_to_bound"] == pytest.approx(sum(train) / sum(bound))  # the medians' ratio (2 windows each)
        assert 0 <= p["input_wait_share"] <= 1, name  # measured for every pipeline (None only if unmeasurable)
    assert "queue_fill_sec" in written["pipelines"]["queue"]
    assert written["config"]["pipeline"]["num_threads"] == 2  # the chosen pipeline keeps its overrides
    table = (tmp_path / "bench.txt").read_text()
    assert table.splitlines()[0].split()[:2] == ["pipeline", "pipeline"] and "bound" in table
    assert "\nautotune " in table  # tf.data's own AUTOTUNE, an arm of the table
    assert "bound: the same train op on a constant batch" in table  # how the bound is built
    above = [n for n, p in written["pipelines"].items() if p["ratio_to_bound"] > 1.03]  # beyond one round's noise
    assert [n for n in written["pipelines"] if f"warning: {n} trained at" in table] == above


def test_a_pipeline_above_the_bound_beyond_its_noise_is_said_to_be_untrustworthy():
    from runner.perf.bench import _above_bound

    assert _above_bound("tf_data", {"ratio_to_bound": 1.02}) is None  # one round: within its noise
    assert "rerun on a quieter machine, or with bench.repeats=5" in _above_bound("tf_data", {"ratio_to_bound": 1.08})
    assert _above_bound("queue", {"ratio_to_bound": 1.05, "ratio_to_bound_interval": [0.98, 1.12]}) is None
    said = _above_bound("queue", {"ratio_to_bound": 1.09, "ratio_to_bound_interval": [1.02, 1.16]})
    assert said.startswith("warning: queue trained at 1.090 x the model-only bound, above it beyond its noise")


@pytest.mark.filterwarnings("ignore:To make it possible to preserve tf.data options")  # read back in graph mode
def test_the_benchs_autotune_arm_is_tf_data_as_tf_data_runs_it():
    """The arm beside runner's tf_data settings: every -1 AUTOTUNE (reads, map, prefetch), tf.data's autotuner with
    its defaults and tf.data's own threading; what the pipeline builds from it, its options read back."""
    import tensorflow as tf
    from omegaconf import OmegaConf

    from runner.config.hydra import with_pipeline
    from runner.pipelines import PIPELINES
    from runner.run.data import build_dataset
    from tests.helpers import TINY

    cfg = compose(*TINY, "mode=bench", "pipeline=tf_data", "pipeline.shuffle_buffer=500")
    arm = with_pipeline(cfg, "autotune", "fp32").pipeline
    assert arm.name == "tf_data" and arm.shuffle_buffer == 500  # the chosen pipeline's order settings
    assert (arm.num_parallel_reads, arm.num_parallel_calls, arm.prefetch, arm.max_intra_op_parallelism) == (-1, -1,
                                                                                                            -1, 0)
    pipeline = PIPELINES.get("tf_data")(OmegaConf.to_object(arm), build_dataset(cfg), seed=0)
    with tf.Graph().as_default():
        options = pipeline._batches("train", 50, True)[0].options()
    assert options.autotune.enabled and options.threading.max_intra_op_parallelism is None
    assert options.autotune.autotune_algorithm == tf.data.experimental.AutotuneAlgorithm.DEFAULT


@pytest.mark.slow  # the command line's bench; the in-process tests above and below measure the same code
def test_bench_of_chosen_pipelines_from_the_command_line(tmp_path):
    proc = run_cli(*TINY_BENCH, "bench.pipelines=[tf_data]", "hardware=cpu2", f"run_dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Model-only bound: 2 warm-up steps" in proc.stdout and "Measuring pipeline tf_data" in proc.stdout
    written = json.loads((tmp_path / "bench.json").read_text())
    assert list(written["pipelines"]) == ["tf_data"] and written["devices"] == ["/cpu:0", "/cpu:1"]
    unknown = run_cli(*TINY_BENCH, "bench.pipelines=[fax]", f"run_dir={tmp_path}/x")
    assert unknown.returncode == 2 and "bench.pipelines contains 'fax'; known pipelines: feed_dict," in unknown.stdout
    assert "(and autotune: tf.data's own AUTOTUNE settings)" in unknown.stdout
    assert not (tmp_path / "x").exists()


def _state_updated_by(train_op) -> set[str]:
    """Names of the global variables that one run of ``train_op`` writes (gradients applied, averages updated)."""
    import tensorflow as tf

    names = {v.op.name for v in train_op.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    seen, stack, updated = set(), [train_op], set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.inputs and ("Apply" in op.type or op.type.startswith("Assign")):
            updated.add(op.inputs[0].op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return updated & names


@pytest.mark.slow  # a bench of every pipeline
def test_the_bench_measures_the_op_that_trains(tmp_path, monkeypatch):
    """The bound and the pipelines are built by the training's own graph builder: the same variables, and one step
    updates the same ones (the model, the optimizer's step, the moving averages of the CIFAR-10 preset)."""
    import runner.engine.training
    import runner.perf.measure
    from runner.engine.graph import build_train_graph

    built = []

    def recording(*args, **kwargs):
        built.append(build_train_graph(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runner.engine.training, "build_train_graph", recording)
    monkeypatch.setattr(runner.perf.measure, "build_train_graph", recording)
    shapes = ["dataset=shapes", "dataset.num_train=500", "dataset.num_test=100", "batch_size=16", "pipeline=tf_data"]
    run(compose(*shapes, "max_steps=2", "log_every=1"), str(tmp_path / "train"))
    run(compose(*shapes, "mode=bench", "bench.pipelines=[tf_data]", "bench.warmup_steps=0", "bench.windows=1",
                "bench.steps_per_window=1"), str(tmp_path / "bench"))
    trained, bound, measured = built
    variables = [sorted(v.op.name for v in g.graph.get_collection("variables")) for g in built]
    assert variables[0] == variables[1] == variables[2]
    assert any("ExponentialMovingAverage" in name for name in variables[0])  # the preset's averages are there
    updated = [_state_updated_by(g.train_op) for g in built]
    assert updated[0] == updated[1] == updated[2]
    assert {"global_step", "conv1/weights", "conv1/weights/ExponentialMovingAverage"} <= updated[0]


@pytest.mark.slow  # the bench's fast tier measures every pipeline; this adds the real loop beside it
def test_a_training_run_is_measured_beside_the_bench(tmp_path):
    """bench.training_run=true: the real loop trains each pipeline as long as the bench's windows and its
    examples/sec is set beside the bench's train figure."""
    out = run(compose(*TINY_BENCH, "bench.pipelines=[tf_data]", "bench.training_run=true", "bench.windows=3"),
              str(tmp_path))
    p = out["pipelines"]["tf_data"]
    assert len(p["training_run_window_examples_per_sec"]) == 3  # the windows after the warm-up steps
    assert p["training_run_examples_per_sec"] == pytest.approx(
        sorted(p["training_run_window_examples_per_sec"])[1])
    bound = sorted(p["training_run_bound_window_examples_per_sec"])  # bracketing the run, as the bench's pipelines
    ratio = p["training_run_examples_per_sec"] / bound[1]
    assert len(bound) == 3 and p["training_run_ratio_to_bound"] == pytest.approx(ratio)
    assert p["training_run_ratio_to_bench"] == pytest.approx(ratio / p["ratio_to_bound"])
    summary = json.loads((tmp_path / "training_tf_data" / "summary.json").read_text())
    assert summary["steps"] == 3 + 3 * 3 and summary["pipeline"] == "tf_data"  # warm-up: one whole window
    assert "training run" in (tmp_path / "bench.txt").read_text()


@pytest.mark.slow  # three rounds of the bench
def test_bench_repeats_give_each_ratio_an_interval_and_compare_the_pipelines_round_by_round(tmp_path):
    from scipy import stats

    out = run(compose(*TINY_BENCH, "bench.pipelines=[tf_data,feed_dict]", "bench.repeats=3", "bench.stages=false"),
              str(tmp_path))
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["repeats"] == 3
    ratios = {}
    for name, p in written["pipelines"].items():
        rounds = [r["ratio_to_bound"] for r in p["rounds"]]
        assert len(rounds) == 3 and p["ratio_to_bound"] == pytest.approx(sum(rounds) / 3)  # the mean over rounds
        low, high = stats.t.interval(0.95, 2, loc=sum(rounds) / 3, scale=stats.sem(rounds))
        assert p["ratio_to_bound_interval"] == pytest.approx([low, high])
        assert len(p["train_window_examples_per_sec"]) == 3 * 2  # every round's windows
        ratios[name] = rounds
    (compared,) = written["comparisons"]  # two pipelines: one pair, the faster first
    a, b = compared["pipelines"]
    assert sum(ratios[a]) >= sum(ratios[b]) and compared["test"] == "paired t-test"
    assert compared["p"] == pytest.approx(stats.ttest_rel(ratios[a], ratios[b]).pvalue)
    table = (tmp_path / "bench.txt").read_text()
    assert f"{a} − {b}: " in table and "(n=3 rounds, paired t-test by round, p=" in table
    assert " ± " in next(line for line in table.splitlines() if line.startswith("tf_data"))
    assert out["pipelines"].keys() == written["pipelines"].keys()


@pytest.mark.slow  # rates of stages timed on 2 shared cores: under load a prefix can measure slower than the whole
def test_the_bench_times_each_stage_and_names_what_limits_each_pipeline(tmp_path):
    """Stage rates are positive, a prefix is never much slower than the whole (each adds work), and the limit is
    one of the model's three: on the CIFAR-10 CNN the input's stages run far faster than the model."""
    out = run(compose(*TINY_BENCH, "model=cifar10_cnn"), str(tmp_path))
    stages = {"feed_dict": ["gather", "preprocess", "feed"], "preloaded": ["gather", "preprocess", "batch"],
              "queue": ["read", "decode", "preprocess", "batch"], "tf_data": ["read", "decode", "preprocess", "batch"]}
    stages["autotune"] = stages["tf_data"]  # the bench's arm of tf_data as its users write it
    assert set(out["pipelines"]) == set(stages)
    for name, p in out["pipelines"].items():
        assert [s["stage"] for s in p["stages"]] == stages[name]
        rates = [s["examples_per_sec"] for s in p["stages"]]
        assert all(r > 0 for r in rates) and all(s["cpu_us_per_example"] >= 0 for s in p["stages"])
        assert all(r > 0.5 * rates[-1] for r in rates[:-1]), (name, rates)  # within noise of 2 shared cores
        a = p["attribution"]
        assert a["limit"] in ("model", "shared CPU"), (name, a)  # the CNN costs ~1 ms an example, the input ~us
        assert a["expected_examples_per_sec"] == min(a["model_examples_per_sec"], a["input_examples_per_sec"],
                                                     a["shared_cpu_examples_per_sec"])
        assert a["shared_cpu_examples_per_sec"] == pytest.approx(
            a["cores"] * 1e6 / (p["pipeline_cpu_us_per_example"] + out["bound_cpu_us_per_example"]))
    assert out["pipelines"]["queue"]["stages"][0]["threads"] == 16  # the queue's reader threads, as it runs them
    table = (tmp_path / "bench.txt").read_text()
    assert "queue      read " in table and "tf_data: the " in table and " limits at " in table


def test_a_slow_preprocessing_stage_is_named_as_the_input_limit(tmp_path, monkeypatch):
    """A stage made slow on purpose (10 ms a batch of 16, one call at a time): the input limits the MLP, and its
    costliest stage is the preprocessing."""
    import time

    import tensorflow as tf

    from runner.datasets.digits import Digits

    fast = Digits.preprocess

    def slow(self, examples, training):
        out = fast(self, examples, training)
        delayed = tf.py_function(lambda x: (time.sleep(0.01), x)[1], [out], tf.float32)
        delayed.set_shape(out.shape)
        return delayed

    monkeypatch.setattr(Digits, "preprocess", slow)
    out = run(compose("mode=bench", "dataset.num_train=1200", "dataset.num_test=300", "dataset.validation_size=0",
                      "eval_splits=[test]", "batch_size=16", "pipeline=tf_data", "bench.pipelines=[tf_data]",
                      "bench.warmup_steps=2", "bench.windows=2", "bench.steps_per_window=5",
                      "pipeline.num_parallel_calls=1", "pipeline.prefetch=1"), str(tmp_path))
    p = out["pipelines"]["tf_data"]
    assert p["attribution"]["limit"] == "input" and p["attribution"]["costliest_stage"] == "preprocess", p
    assert p["stages"][2]["examples_per_sec"] < 16 / 0.01  # the slow stage's prefix: at most 1,600 a second
    assert p["stages"][1]["examples_per_sec"] > 3 * p["stages"][2]["examples_per_sec"]  # decode is not the limit


@pytest.mark.slow  # the command line's bench with rounds; the fast tier measures the same code in-process
def test_bench_rounds_and_stages_as_typed_in_an_empty_folder(tmp_path):
    proc = run_cli(*TINY_BENCH, "bench.pipelines=[tf_data,feed_dict]", "bench.repeats=2", cwd=tmp_path,
                   timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/bench.json")]
    table = (run_dir / "bench.txt").read_text()
    assert "Round 2 of 2" in proc.stdout and "in ratio to the bound (n=2 rounds, paired t-test by round, p=" in table
    assert "tf_data    read " in table and "feed_dict  gather " in table and " limits at " in table


@pytest.mark.slow  # two TensorFlow runs of the bench
def test_a_signal_keeps_the_finished_rounds_and_exits_128_plus_it(tmp_path):
    """SIGINT in the second round (or while stages are timed): exit 130, one line, bench.json with the first
    round's figures and "interrupted"; a signal before any round finished writes nothing."""
    args = [*TINY_BENCH, "bench.repeats=2", "bench.pipelines=[tf_data,preloaded]", "run_dir=run"]
    proc = stop_when(args, "Round 2 of 2", signal.SIGINT, cwd=tmp_path)
    assert proc.returncode == 130, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout and "the bench stopped" in proc.stdout
    written = json.loads((tmp_path / "run" / "bench.json").read_text())
    assert written["interrupted"] == "SIGINT" and written["repeats"] == 2
    assert set(written["pipelines"]) == {"tf_data", "preloaded"}
    assert all(p["ratio_to_bound"] > 0 for p in written["pipelines"].values())
    early = stop_when([*args[:-1], "run_dir=early"], "Measuring pipeline", signal.SIGINT, cwd=tmp_path)
    assert early.returncode == 130 and "Traceback" not in early.stdout, early.stdout[-3000:]
    assert not (tmp_path / "early" / "bench.json").exists()


def test_bench_compare_refuses_settings_that_give_no_interval(tmp_path):
    import subprocess
    import sys

    for args, said in ((["--rounds", "1"], "--rounds must be at least 2"),
                       (["--pairings", "fp32,fp8"], "--pairings fp32,fp8: choose from fp32,bf16,run/bench")):
        proc = subprocess.run([sys.executable, "-m", "runner.perf.compare", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert not list(tmp_path.iterdir())


@pytest.mark.slow  # a Keras fit and a runner run, twice (about a minute)
def test_make_bench_compare_pairs_runner_with_keras_fit_in_rounds(tmp_path):
    """``make bench-compare`` as typed, with fewer rounds: each round runs both sides, the ratio is the mean of the
    per-round ratios with its 95% interval, and the table names the CPU."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    proc = subprocess.run(["make", "-s", "-o", "install", "bench-compare", f"PY={sys.executable}",
                           f"ARGS=--rounds 2 --steps 30 --pairings fp32 --out {tmp_path}/out"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "out" / "compare.json").read_text())
    p = out["pairings"]["fp32"]
    assert len(p["pairs"]) == 2 and all(a > 0 and b > 0 for a, b in p["pairs"])
    ratios = [a / b for a, b in p["pairs"]]
    assert p["ratio"] == pytest.approx(sum(ratios) / 2) and p["interval"][0] < p["ratio"] < p["interval"][1]
    assert out["cpu"] in (tmp_path / "out" / "compare.txt").read_text() and "round 2/2 fp32" in proc.stdout
