"""Why a pipeline is as fast as it is: the rate and CPU cost of each prefix of it (read -> decode -> preprocess for
the pipelines that read files; gather -> preprocess for those that hold arrays), timed on its own, and a model of
the whole beside the measurement.

With P cores, an input that costs c_in CPU-us per example and a model step that costs c_m, training can go no faster
than the smallest of: the model's own rate (the bound), the input's own rate, and P / (c_in + c_m), when both share
the CPU. The smallest names what limits the pipeline; the measured training rate's shortfall from it is what is lost
to contention or serialization. The stage whose own cost (its prefix's time per example less the previous prefix's)
is largest is the one to speed up when the input limits.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import tensorflow as tf

from runner.engine.session import session
from runner.pipelines.base import Stage

STAGE_WINDOW_SECS = 0.4  # each timed window of a stage runs calls for at least this long
STAGE_WARMUP_SECS = 0.3


def _timed(call: Callable[[], int], threads: int, secs: float) -> tuple[float, float]:
    """(examples/sec, process CPU us per example) of ``threads`` threads running ``call`` for ``secs``."""
    counts, failed = [0] * threads, []
    end = time.perf_counter() + secs

    def loop(i: int) -> None:
        try:
            while time.perf_counter() < end:
                counts[i] += call()
        except Exception as err:  # said by the caller's thread
            failed.append(err)

    wall, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failed:
        raise failed[0]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    examples = max(sum(counts), 1)
    return examples / wall, cpu / examples * 1e6


def measure_stage(build: Callable[[], Stage], session_config, windows: int) -> dict:
    """One prefix, built by ``build`` in a graph of its own: the median examples/sec and CPU us per example of
    ``windows`` timed windows after a warm-up."""
    graph = tf.Graph()
    with graph.as_default(), tf.device("/cpu:0"):
        stage = build()
        count = None if stage.call else tf.convert_to_tensor(stage.count)
    if stage.call is not None:
        return _windows(stage.call, stage, windows)
    with session(graph, session_config, []) as (sess, _):
        if stage.on_session:
            stage.on_session(sess)
        fetch = [stage.fetch, count]
        raw = sess.run_step_fn(lambda step_context: step_context.session)  # thread-safe, as the queue's threads use it

        def call() -> int:
            return int(raw.run(fetch)[1])

        return _windows(call, stage, windows)


def _windows(call: Callable[[], int], stage: Stage, windows: int) -> dict:
    _timed(call, stage.threads, STAGE_WARMUP_SECS)
    found = [_timed(call, stage.threads, STAGE_WINDOW_SECS) for _ in range(windows)]
    return {"stage": stage.name, "threads": stage.threads if stage.threads > 1 else None,
            "examples_per_sec": statistics.median(w[0] for w in found),
            "cpu_us_per_example": statistics.median(w[1] for w in found)}


def stage_rates(make_pipeline: Callable[[], object], session_config, batch_size: int, windows: int,
                whole: dict) -> list[dict]:
    """Each prefix of the pipeline (a new one from ``make_pipeline`` for each: a pipeline holds the tensors of the
    graph it built), then the whole as the bench measured it (``whole``: its pipeline-only figures)."""
    pipeline = make_pipeline()
    found = [measure_stage(lambda name=name: make_pipeline().stage(name, "train", batch_size), session_config,
                           windows) for name in pipeline.STAGES]
    found.append({"stage": pipeline.FINAL_STAGE, "threads": None,
                  "examples_per_sec": whole["pipeline_examples_per_sec"],
                  "cpu_us_per_example": whole["pipeline_cpu_us_per_example"]})
    return found


def attribution(stages: list[dict], measured: dict, bound: dict, num_cores: int) -> dict:
    """What limits a pipeline: the model (the bound), the input (its own rate), or the CPU both share
    (P / (c_in + c_m)); the expected rate, the measured one's shortfall, and the costliest stage."""
    c_in, c_m = measured["pipeline_cpu_us_per_example"], bound["cpu_us_per_example"]
    limits = {"model": bound["examples_per_sec"], "input": measured["pipeline_examples_per_sec"],
              "shared CPU": num_cores * 1e6 / (c_in + c_m)}
    limit = min(limits, key=limits.get)
    expected = limits[limit]
    costs, previous = [], 0.0
    for s in stages:  # each stage's own time per example: its prefix's less the one before
        per_example = 1e6 / s["examples_per_sec"]
        costs.append(max(per_example - previous, 0.0))
        previous = max(previous, per_example)
    costliest = max(range(len(stages)), key=costs.__getitem__)
    return {"limit": limit, "expected_examples_per_sec": expected,
            "model_examples_per_sec": limits["model"], "input_examples_per_sec": limits["input"],
            "shared_cpu_examples_per_sec": limits["shared CPU"], "cores": num_cores,
            "measured_examples_per_sec": measured["train_examples_per_sec"],
            "shortfall": 1 - measured["train_examples_per_sec"] / expected,
            "input_cpu_share": c_in / (c_in + c_m),  # of the CPU a trained example costs, the input's part
            "costliest_stage": stages[costliest]["stage"], "stage_us_per_example": costs}


def served_prediction(in_process: dict, served: dict, bound: dict, workers: int, worker_cpus: list[int] | None,
                      num_cores: int) -> dict:
    """What tf_data should train at with its input on ``workers`` tf.data service workers, from what the bench
    measured in process: a worker makes at most 1e6 / c_in examples/sec on a core of its own (c_in: the input's CPU
    us per example in process), so the input's limit is that times the workers (times the CPUs they are pinned to,
    if fewer). The model's limit is the bound; unpinned, the workers share this machine's cores with the trainer
    (P / (c_in + c_m)). Transport costs are not in the model: the measured rate's shortfall shows them."""
    c_in, c_m = in_process["pipeline_cpu_us_per_example"], bound["cpu_us_per_example"]
    per_worker = 1e6 / c_in
    limits = {"model": bound["examples_per_sec"],
              "input": min(workers, len(worker_cpus) if worker_cpus else workers) * per_worker}
    if not worker_cpus:
        limits["shared CPU"] = num_cores * 1e6 / (c_in + c_m)
    limit = min(limits, key=limits.get)
    measured = served["train_examples_per_sec"]
    return {"limit": limit, "expected_examples_per_sec": limits[limit], "per_worker_examples_per_sec": per_worker,
            "limits": limits, "model_cpu_us_per_example": c_m, "measured_examples_per_sec": measured,
            "shortfall": 1 - measured / limits[limit]}


def served_line(name: str, served: dict, in_process: dict) -> str:
    """One line: the prediction beside the measurement, and the trainer's CPU per example with and without the
    input in its process."""
    a, n = served["predicted"], served["service_workers"]
    where = f" on CPU(s) {','.join(map(str, served['service_cpus']))}" if served["service_cpus"] else ""
    return (f"{name}: {n} worker(s){where}: predicted {a['expected_examples_per_sec']:,.0f} ex/s (the {a['limit']} "
            f"limits; a worker {a['per_worker_examples_per_sec']:,.0f} ex/s from tf_data's "
            f"{in_process['pipeline_cpu_us_per_example']:,.0f} CPU us per example in process, the model alone "
            f"{a['limits']['model']:,.0f}), measured {a['measured_examples_per_sec']:,.0f} ({_short(a['shortfall'])}); "
            f"the trainer's CPU {served['train_cpu_us_per_example']:,.0f} us per example (the model alone "
            f"{a['model_cpu_us_per_example']:,.0f}, with the input in its process "
            f"{in_process['train_cpu_us_per_example']:,.0f}); input wait {_pct(served['input_wait_share'])}")


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def limit_line(name: str, stages: list[dict], a: dict) -> str:
    """One line: what limits the pipeline and at what rate, the input's share of the CPU, its costliest stage,
    the three limits of the model and the measured rate against the expected one."""
    stage = next(s for s in stages if s["stage"] == a["costliest_stage"])
    threads = f", {stage['threads']} thread{'s' if stage['threads'] != 1 else ''}" if stage["threads"] else ""
    share = a["stage_us_per_example"][stages.index(stage)] / max(sum(a["stage_us_per_example"]), 1e-9)
    where = {"model": "the model limits", "input": "the input limits", "shared CPU": "the shared CPU limits"}
    return (f"{name}: {where[a['limit']]} at {a['expected_examples_per_sec']:,.0f} ex/s (the input takes "
            f"{a['input_cpu_share']:.0%} of the CPU an example costs); input "
            f"{a['input_examples_per_sec']:,.0f} ex/s ({a['costliest_stage']} its costliest stage, {share:.0%} of its "
            f"time{threads}), the model alone {a['model_examples_per_sec']:,.0f}, shared CPU "
            f"{a['shared_cpu_examples_per_sec']:,.0f} on {a['cores']} cores; expected "
            f"{a['expected_examples_per_sec']:,.0f}, measured {a['measured_examples_per_sec']:,.0f} "
            f"({_short(a['shortfall'])})")


def _short(shortfall: float) -> str:
    if shortfall >= 0:
        return f"{shortfall:.0%} short"
    return f"{-shortfall:.0%} above: the pipeline-only figure it comes from is itself measured with noise"


def stage_table(pipelines: dict[str, dict]) -> str:
    """Each pipeline's stages: examples/sec and CPU us per example of each prefix."""
    lines = [f"{'pipeline':<10} stages (prefix examples/sec, CPU us/example)"]
    for name, p in pipelines.items():
        if "stages" in p:
            lines.append(f"{name:<10} " + " -> ".join(
                f"{s['stage']} {s['examples_per_sec']:,.0f} ({s['cpu_us_per_example']:,.0f})" for s in p["stages"]))
    return "\n".join(lines)
