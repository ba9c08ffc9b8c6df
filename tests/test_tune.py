"""mode=tune as typed, in a copy of the project (it writes an experiment file): from a deliberately bad start it
writes an experiment that composes and runs, changes no key outside its search space, and stops within its
budget."""
from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys

import pytest
import yaml

from tests.helpers import project_copy, run_cli, stop_when, user_env

SMALL = ["dataset.num_train=1200", "dataset.num_test=300", "dataset.validation_size=200", "eval_splits=[test]"]
QUICK = ["bench.warmup_steps=2", "bench.windows=2", "bench.steps_per_window=5"]
BUDGET = 5  # below what the whole search takes here (about 7 s), so the budget binds


def _runner(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=user_env())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """python -m runner mode=tune pipeline=queue pipeline.num_threads=1 pipeline.records_per_read=1 ..."""
    copy = project_copy(tmp_path_factory.mktemp("project"))
    start = ["pipeline=queue", "pipeline.num_threads=1", "pipeline.records_per_read=1", *SMALL]
    proc = _runner(copy, "mode=tune", *start, f"tune.budget_secs={BUDGET}", "tune.confirm_rounds=0", *QUICK,
                   "run_dir=tuning")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return copy, start, proc.stdout, json.loads((copy / "tuning" / "tune.json").read_text())["queue"]


def test_tune_writes_an_experiment_that_composes_and_runs(tuned):
    copy, _, out, result = tuned
    written = re.search(r"Wrote (\S+): (python -m runner .*)", out)
    assert written and written.group(1) == str((copy / "experiments" / "tuned_digits_mlp.yaml").resolve()), out
    command = written.group(2)
    assert command == "python -m runner experiment=tuned_digits_mlp " + " ".join(SMALL)  # the typed rest, kept
    text = (copy / "experiments" / "tuned_digits_mlp.yaml").read_text()
    assert text.startswith("# @package _global_\n# Written by mode=tune on ") and "# start: " in text
    assert "  - override /pipeline: queue" in text
    assert re.search(r"trial +changed +train ex/s +x bound", out) and "best: pipeline.num_threads=" in out
    run = _runner(copy, *shlex.split(command)[3:], "max_steps=20")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(next(copy.glob("outputs/*/*/summary.json")).read_text())
    assert summary["steps"] == 20 and summary["pipeline"] == "queue"
    best = result["best"]["settings"]
    assert summary["config"]["pipeline"]["num_threads"] == best["pipeline.num_threads"]
    assert summary["config"]["hardware"]["intra_op_threads"] == best["hardware.intra_op_threads"]


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_tune_changes_no_key_outside_its_search_space(tuned):
    copy, start, _, result = tuned
    before = _flat(yaml.safe_load(_runner(copy, "--cfg", "job", *start).stdout))
    after = _flat(yaml.safe_load(_runner(copy, "--cfg", "job", "experiment=tuned_digits_mlp", *SMALL).stdout))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    space = set(result["best"]["settings"])
    assert space == {"pipeline.num_threads", "pipeline.records_per_read", "hardware.intra_op_threads",
                     "hardware.inter_op_threads"}  # the order knob (min_fraction) only with tune.allow_order
    assert changed <= space, changed - space
    assert before["batch_size"] == after["batch_size"] and before["pipeline.min_fraction_of_examples_in_queue"] \
        == after["pipeline.min_fraction_of_examples_in_queue"]


def test_tune_stops_within_its_budget(tuned):
    _, _, _, result = tuned
    slowest = max(t["secs"] for t in result["trials"])
    assert result["stopped_by_budget"] and result["trials"][0]["changed"] == "start"
    # It never starts a trial past its budget: the trials before the last took less than the budget together. (How
    # far the last one runs over depends on the machine's load, so no wall-clock bound is asserted: CI may be busy.)
    assert sum(t["secs"] for t in result["trials"][:-1]) < BUDGET, result["trials"]
    assert slowest > 0
    kept = [t for t in result["trials"] if t["kept"]]
    assert kept[0]["changed"] == "start" and result["best"] == kept[-1]
    assert all(b["ratio"] > a["ratio"] for a, b in zip(kept, kept[1:]))  # each kept step gained


def _trial(changed: str, ratio: float):
    from runner.perf.search import Trial

    return Trial({"k": changed}, changed, examples_per_sec=1000 * ratio, ratio=ratio)


def test_the_guided_walk_passes_again_when_a_later_knob_changes_what_the_earlier_ones_gain():
    """prefetch gains nothing while every step decodes, and 14% once the split is cached: the walk, prefetch
    first, finds it in its second pass, measures no setting twice, and stops after a pass that moves nothing."""
    from runner.perf.search import Result, Trial, _walk

    def ratio(s):  # the landscape: prefetch matters only with the cache
        return 0.2 if s["cache"] == "none" else {1: 0.70, 2: 0.75, 4: 0.80}[s["prefetch"]]

    class Trials:
        result = Result(limit={"limit": "input"})
        measured: list[dict] = []

        def measure(self, settings, changed):
            self.measured.append(settings)
            trial = Trial(dict(settings), changed, ratio=ratio(settings))
            self.result.trials.append(trial)
            return trial, None

        def over_budget(self):
            return False

    trials = Trials()
    start = Trial({"prefetch": 1, "cache": "none"}, "start", ratio=0.2)
    trials.result.trials.append(start)
    best = _walk(trials, {"prefetch": (1, 2, 4), "cache": ("none", "memory")}, start.settings, start)
    assert best.settings == {"prefetch": 4, "cache": "memory"}
    keys = [tuple(sorted(s.items())) for s in trials.measured]
    assert len(keys) == len(set(keys))  # no setting measured twice
    assert len(keys) == 5  # pass 1: prefetch 2, cache memory; pass 2: prefetch 2 and 4, cache none; pass 3: none new


@pytest.mark.parametrize("true_gain,named", [(1.30, True), (1.005, False)])
def test_the_winner_is_confirmed_in_paired_rounds_and_named_only_when_told_from_the_start(true_gain, named):
    """One lucky measurement made "b" the search's best; the rounds measure again (with noise), and name it only
    when they tell it from the start; the winner against the reference comes with its 95% interval."""
    import numpy as np

    from runner.perf.search import REFERENCE, Result, _confirm, confirmation

    start, a, b, far = _trial("start", 0.50), _trial("a", 0.55), _trial("b", 0.80), _trial("far", 0.30)
    reference = _trial(REFERENCE, 0.45)
    result = Result(trials=[start, reference, a, b, far], best=b, start=start, reference=reference)
    truth = {"start": 0.50, "a": 0.50 * true_gain * 0.98, "b": 0.50 * true_gain, "far": 0.30, REFERENCE: 0.45}
    rng = np.random.default_rng(0)
    seen = []
    _confirm(result, lambda s: seen.append(s["k"]) or truth[s["k"]] * rng.normal(1, 0.02), rounds=4)
    assert sorted(set(seen)) == sorted(["b", "start", REFERENCE]) and len(seen) == 12  # a (0.55) is not within 10%
    assert result.candidate == "k=b" and (result.best is b) == named
    assert result.versus_start.distinguishable == named
    versus = result.versus_reference
    assert versus.low < versus.ratio < versus.high and versus.rounds == 4
    assert versus.low < (1.30 * 0.50 / 0.45 if named else 0.50 / 0.45) < versus.high
    said = "\n".join(confirmation(result))
    assert ("the start is kept" in said) != named and "against tf.data's own AUTOTUNE" in said


@pytest.mark.slow  # a bench on jpegs
def test_larger_jpegs_decoded_at_every_step_are_named_as_the_input_limit(tmp_path):
    """The input-bound case: 96x96 JPEGs fitted to 32x32, decoded in the graph at every step; at the pipelines'
    default settings on this machine's cores the input, not the MLP, limits: by its own rate, or (decoding on
    every core) through the CPU it shares with the model, most of which it takes. Decoding is its costliest stage."""
    from runner.cli.app import run
    from tests.helpers import compose, write_jpeg_folder

    write_jpeg_folder(tmp_path / "jpegs", 400, 80)
    out = run(compose("mode=bench", "dataset=image_folder", f"dataset.root={tmp_path}/jpegs",
                      f"dataset.cache_dir={tmp_path}/cache", "bench.pipelines=[queue,tf_data]", *QUICK),
              str(tmp_path / "bench"))
    for name in ("queue", "tf_data"):
        a = out["pipelines"][name]["attribution"]
        assert a["limit"] in ("input", "shared CPU") and a["costliest_stage"] == "decode", (name, a)
        assert a["input_cpu_share"] > 0.5 and a["input_examples_per_sec"] < a["model_examples_per_sec"] / 2, a


def test_the_order_knobs_are_searched_only_where_allowed_and_within_memory(tiny_digits):
    from runner.config.checks import search_space
    from runner.perf.experiment import within_memory
    from tests.helpers import compose

    queue = compose("pipeline=queue")
    assert "pipeline.min_fraction_of_examples_in_queue" not in search_space(queue, (0, 1))
    allowed = search_space(compose("pipeline=queue", "tune.allow_order=true"), (0, 1))
    assert allowed["pipeline.min_fraction_of_examples_in_queue"] == (0.05, 0.1, 0.2, 0.4)
    assert allowed["hardware.intra_op_threads"] == (0, 1)
    # 1,000 training examples of 784 floats: a fraction f holds (1000 f + 300) x 3,136 bytes; half of 4 MB: f <= 0.33
    fits = within_memory(allowed, tiny_digits, 100, 4 * 10**6)
    assert fits["pipeline.min_fraction_of_examples_in_queue"] == (0.05, 0.1, 0.2)
    assert fits["pipeline.num_threads"] == allowed["pipeline.num_threads"]


def test_tf_datas_speed_knobs_are_searched_and_its_order_knobs_only_where_allowed():
    from runner.config.checks import search_space
    from tests.helpers import compose

    speed = {"num_parallel_calls", "prefetch", "cache", "private_threadpool_size", "max_intra_op_parallelism",
             "autotune.algorithm", "autotune.cpu_budget"}
    order = {"shuffle_buffer", "num_parallel_reads", "deterministic"}
    space = search_space(compose("pipeline=tf_data"), (0, 1))
    assert {k.split(".", 1)[1] for k in space if k.startswith("pipeline.")} == speed
    assert space["pipeline.cache"] == ("none", "memory", "disk")
    allowed = search_space(compose("pipeline=tf_data", "tune.allow_order=true"), (0, 1))
    assert {k.split(".", 1)[1] for k in allowed if k.startswith("pipeline.")} == speed | order
    assert allowed["pipeline.deterministic"] == (True, False)


def test_tune_knobs_searches_only_the_knobs_named_and_refuses_one_outside_the_space():
    from runner.config.checks import search_space
    from runner.core.errors import ConfigError
    from tests.helpers import compose

    space = search_space(compose("pipeline=tf_data", "tune.knobs=[num_parallel_calls,pipeline.cache,"
                                 "hardware.inter_op_threads]"), (0, 1))
    assert space == {"pipeline.num_parallel_calls": (1, 2, 4, 8, -1), "pipeline.cache": ("none", "memory", "disk"),
                     "hardware.inter_op_threads": (0, 1)}
    with pytest.raises(ConfigError, match=r"tune.knobs=.*pipeline.shuffle_buffer not in the search space of "
                                          r"pipeline=tf_data.*tune.allow_order=true"):
        search_space(compose("pipeline=tf_data", "tune.knobs=[shuffle_buffer]"), (0, 1))


@pytest.mark.slow  # a TensorFlow search stopped midway
def test_a_signal_stops_the_search_at_once_keeping_its_trials(tmp_path):
    """SIGINT during a trial of a grid search: exit 130 at once (not "failed", not the rest of the budget), the
    trials measured so far in tune.json, and the line says how to continue; no experiment is written."""
    copy = project_copy(tmp_path / "project")
    args = ["mode=tune", "pipeline=queue", "tune.search=grid", "tune.budget_secs=600", *SMALL, *QUICK, "run_dir=t"]
    proc = stop_when(args, "trial 1 ", signal.SIGINT, cwd=copy)
    assert proc.returncode == 130, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout and "rerun the same command to search again" in proc.stdout
    assert "failed: SIGINT" not in proc.stdout
    kept = json.loads((copy / "t" / "tune.json").read_text())["queue"]
    assert kept["interrupted"] and len(kept["trials"]) >= 2 and kept["trials"][0]["ratio"] > 0
    assert not (copy / "experiments" / "tuned_digits_mlp.yaml").exists()


def test_a_tune_name_is_checked_before_the_search(tmp_path):
    proc = run_cli("mode=tune", "tune.name=../elsewhere", cwd=tmp_path)
    said_all = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "give a name without a path" in said_all and "Traceback" not in said_all, said_all
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args,said", [  # the same checks, in process
    (["tune.name=" + "x" * 300], "at most 100 characters"),
    (["tune.name=mnist_fully_connected_feed"], "exists and mode=tune did not write it"),
    (["pipeline=tf_data", "tune.knobs=[shuffle_buffer]"], "pipeline.shuffle_buffer not in the search space"),
])
def test_tune_settings_are_checked_before_the_search(tmp_path, monkeypatch, args, said):
    from runner.core.errors import ConfigError
    from runner.run.validate import validate
    from tests.helpers import compose

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(said)):
        validate(compose("mode=tune", *args))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # a tune of tf_data with its confirmation rounds (about a minute)
def test_tune_of_tf_data_measures_tf_datas_autotune_and_confirms_its_winner(tmp_path):
    """``python -m runner mode=tune pipeline=tf_data`` as a user types it (small data): tf.data's own AUTOTUNE is
    measured first, never a candidate; the winner is confirmed in paired rounds and the experiment's header gives
    it against AUTOTUNE with its 95% interval."""
    copy = project_copy(tmp_path / "project")
    proc = _runner(copy, "mode=tune", "pipeline=tf_data", "tune.budget_secs=60", "tune.confirm_rounds=2",
                   "tune.threads=false", *SMALL, *QUICK, "run_dir=tuning")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((copy / "tuning" / "tune.json").read_text())["tf_data"]
    assert result["trials"][1]["changed"] == "reference: tf.data's own AUTOTUNE"
    assert result["reference"]["settings"]["pipeline.num_parallel_reads"] == -1
    assert result["best"]["changed"] != "reference: tf.data's own AUTOTUNE"
    assert all(len(ratios) == 2 for ratios in result["confirmed"].values())
    assert "reference: tf.data's own AUTOTUNE" in result["confirmed"] and "start" in result["confirmed"]
    versus = result["versus_reference"]
    assert versus["low"] <= versus["ratio"] <= versus["high"] and versus["rounds"] == 2
    header = (copy / "experiments" / "tuned_digits_mlp.yaml").read_text()
    assert "# confirmed in 2 paired rounds: " in header and "# the winner against tf.data's own AUTOTUNE: " in header
    assert "num_parallel_reads" not in header.split("defaults:")[1]  # an order knob: not without tune.allow_order


@pytest.mark.slow  # a grid of 12 trials (about 20 s)
def test_a_grid_over_the_knobs_named_measures_each_of_their_combinations_once(tmp_path):
    """``mode=tune tune.search=grid tune.knobs=[prefetch,cache]``: every combination of those two knobs, nothing
    else changed, and the winner written with only them set from the start."""
    copy = project_copy(tmp_path / "project")
    proc = _runner(copy, "mode=tune", "pipeline=tf_data", "tune.search=grid", "tune.knobs=[prefetch,cache]",
                   "tune.confirm_rounds=0", "tune.budget_secs=inf", *SMALL, *QUICK, "run_dir=tuning")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((copy / "tuning" / "tune.json").read_text())["tf_data"]
    points = [t["settings"] for t in result["trials"] if not t["changed"].startswith("reference")]
    assert {tuple(sorted(p)) for p in points} == {("pipeline.cache", "pipeline.prefetch")}
    assert sorted((p["pipeline.prefetch"], p["pipeline.cache"]) for p in points) == sorted(
        (prefetch, cache) for prefetch in (1, 2, 4, -1) for cache in ("none", "memory", "disk"))
