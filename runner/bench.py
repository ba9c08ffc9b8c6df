"""mode=bench: what each input method costs, measured against the model's own bound.

The bound is the same train op fed from a constant in-graph batch (one per tower). For each pipeline it measures
batches pulled with no training (pipeline-only examples/s), training examples/s, the ratio to the bound, the share
of step time spent waiting for input (from traced steps), process CPU microseconds per example, and the time to
the first batch (for the queue, the shuffle queue's fill is reported on its own). Warm-up steps are excluded; each
number is the median of several timed windows, and training windows alternate with windows of the bound so that a
shared machine's drifts affect both alike.
"""
from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from runner.engine import Parts, merged_feed, session
from runner.graph import build_train_graph
from runner.hooks import FeedHook
from runner.pipelines.base import Batch

v1 = tf.compat.v1
log = logging.getLogger("runner")


@dataclass
class BenchSettings:
    batch_size: int
    warmup_steps: int
    windows: int
    steps_per_window: int
    seed: int
    moving_average_decay: float | None  # as the run trains: the averages' update is part of the step
    training_run: bool = False  # also a real training run per pipeline
    summary_every: int = 100  # the training run's summaries


def _timed(run_once: Callable[[], None], steps: int, examples_per_step: int) -> tuple[float, float]:
    """(examples/s, process CPU microseconds per example) over ``steps`` runs."""
    wall, proc = time.perf_counter(), time.process_time()
    for _ in range(steps):
        run_once()
    wall, proc = time.perf_counter() - wall, time.process_time() - proc
    examples = steps * examples_per_step
    return examples / wall, proc / examples * 1e6


def _windows(run_once: Callable[[], None], s: BenchSettings, examples_per_step: int) -> dict:
    """Median examples/s and CPU microseconds per example over the timed windows, after warm-up."""
    for _ in range(s.warmup_steps):
        run_once()
    timed = [_timed(run_once, s.steps_per_window, examples_per_step) for _ in range(s.windows)]
    return {"examples_per_sec": statistics.median(t[0] for t in timed),
            "cpu_us_per_example": statistics.median(t[1] for t in timed),
            "window_examples_per_sec": [t[0] for t in timed]}


@contextlib.contextmanager
def bound_runner(parts: Parts, s: BenchSettings) -> Iterator[Callable[[], None]]:
    """Runs one step of the model-only bound: the train op on a constant batch (a real, preprocessed training
    batch per tower), in a session kept open for the whole benchmark."""
    images, labels = parts.dataset.arrays("train")
    rng = np.random.default_rng(s.seed)
    n = len(labels)

    def constant_batches() -> list[Batch]:
        out = []
        for _ in parts.devices:
            idx = rng.choice(n, s.batch_size, replace=n < s.batch_size)
            x = parts.dataset.preprocess_np(images[idx], True, rng)
            out.append(Batch(tf.constant(x), tf.constant(labels[idx]), n))
        return out

    tg = build_train_graph(parts, s.batch_size, s.seed, s.moving_average_decay, constant_batches)
    with session(tg.graph, parts.session_config, []) as (sess, _):
        yield lambda: sess.run(tg.train_op)


def measure_pipeline(parts: Parts, s: BenchSettings, bound: Callable[[], None], bound_windows: list) -> dict:
    """Pipeline-only and training throughput; training windows alternate with windows of the bound, and the
    ratio to the bound is the median of the paired ratios, so drifts of a shared machine cancel out."""
    tg = build_train_graph(parts, s.batch_size, s.seed, s.moving_average_decay)
    graph, batches, train_op = tg.graph, tg.batches, tg.train_op
    pulls = [b.pull() for b in batches]
    fills = [(b.fill_size, b.fill_target) for b in batches if b.fill_size is not None]
    examples_per_step = tg.examples_per_step
    result = {}
    start = time.perf_counter()
    with session(graph, parts.session_config, batches, hooks=[FeedHook(batches)]) as (sess, _):
        if fills:  # the queue fills before its first batch can leave; timed on its own
            while any(sess.run(size) < target for size, target in fills):
                time.sleep(0.01)
            result["queue_fill_sec"] = time.perf_counter() - start
        sess.run(pulls)
        result["first_batch_sec"] = time.perf_counter() - start
        pipeline_only = _windows(lambda: sess.run(pulls), s, examples_per_step)

        def train_step():
            sess.run(train_op)

        for _ in range(s.warmup_steps):
            train_step()
        pairs = []
        for _ in range(s.windows):
            paired_bound = _timed(bound, s.steps_per_window, examples_per_step)
            pairs.append((_timed(train_step, s.steps_per_window, examples_per_step), paired_bound))
            bound_windows.append(paired_bound)
        result["input_wait_share"] = sess.run_step_fn(
            lambda step_context: _input_wait_share(step_context.session, train_op, batches, steps=max(3, s.windows)))
    result.update(pipeline_examples_per_sec=pipeline_only["examples_per_sec"],
                  pipeline_cpu_us_per_example=pipeline_only["cpu_us_per_example"],
                  train_examples_per_sec=statistics.median(t[0] for t, _ in pairs),
                  train_cpu_us_per_example=statistics.median(t[1] for t, _ in pairs),
                  ratio_to_bound=statistics.median(t[0] / b[0] for t, b in pairs),
                  train_window_examples_per_sec=[t[0] for t, _ in pairs],
                  bound_window_examples_per_sec=[b[0] for _, b in pairs])
    return result


class _PairedBound(v1.train.SessionRunHook):
    """In the training run, a window of the bound after each progress window (outside the timed runs), so the run's
    windows are paired with the bound's as the bench's are."""

    def __init__(self, bound: Callable[[], None], steps_per_window: int, warmup: int, examples_per_step: int):
        self.bound, self.steps_per_window, self.warmup = bound, steps_per_window, warmup
        self.examples_per_step = examples_per_step
        self.windows: list[float] = []
        self.steps = 0

    def after_run(self, run_context, run_values):
        self.steps += 1
        if self.steps > self.warmup and self.steps % self.steps_per_window == 0:
            self.windows.append(_timed(self.bound, self.steps_per_window, self.examples_per_step)[0])


def training_run(parts: Parts, s: BenchSettings, run_dir: str, name: str, config: dict, measured: dict,
                 bound: Callable[[], None]) -> dict:
    """Trains with the real loop (train.train, in ``run_dir/training_<pipeline>``) for as many steps as the
    bench's windows (the warm-up rounded up to whole windows), a window of the bound after each of its progress
    windows. Its examples/sec is the median of its windows after the warm-up; its ratio to the bench is the median of its windows over their paired bound
    windows, over the pipeline's ratio to the bound."""
    from runner.train import Settings, train

    warmup = -(-s.warmup_steps // s.steps_per_window) * s.steps_per_window  # progress lines fall on windows' ends
    steps = warmup + s.windows * s.steps_per_window
    out = Path(run_dir) / f"training_{name}"
    paired = _PairedBound(bound, s.steps_per_window, warmup, s.batch_size * len(parts.devices))
    train(parts, Settings(run_dir=str(out), batch_size=s.batch_size, max_steps=steps, seed=s.seed,
                          log_every=s.steps_per_window, summary_every=s.summary_every, checkpoint_every=steps,
                          keep_checkpoints=1, eval_splits=[], moving_average_decay=s.moving_average_decay,
                          progress="lines"), config, extra_hooks=[paired])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    windows = [m["examples_per_sec"] for m in lines if "examples_per_sec" in m and m["step"] > warmup]
    ratio = statistics.median(w / b for w, b in zip(windows, paired.windows))
    return {"training_run_examples_per_sec": statistics.median(windows),
            "training_run_ratio_to_bound": ratio,
            "training_run_ratio_to_bench": ratio / measured["ratio_to_bound"],
            "training_run_window_examples_per_sec": windows,
            "training_run_bound_window_examples_per_sec": paired.windows}


def _input_wait_share(sess, train_op, batches: list[Batch], steps: int) -> float | None:
    """On the raw session (the pipeline fed here, not by the hooks), the median share of a training step spent before its input was ready, from traced steps: Python feeding time
    plus the time until the ops producing the batch tensors finished, over feeding plus the step's span."""
    names = {t.op.name for b in batches for t in (b.images, b.labels)}
    options = v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE)
    shares = []
    for _ in range(steps):
        t0 = time.perf_counter()
        feed = merged_feed(batches)
        feeding = time.perf_counter() - t0
        metadata = v1.RunMetadata()
        sess.run(train_op, feed, options=options, run_metadata=metadata)
        stats = [n for d in metadata.step_stats.dev_stats for n in d.node_stats]
        if not stats:
            return None
        begin = min(n.all_start_micros for n in stats)
        end = max(n.all_start_micros + n.all_end_rel_micros for n in stats)
        ready = [n.all_start_micros + n.all_end_rel_micros for n in stats if n.node_name in names]
        if not ready and not feed:
            return None  # the batch ops were rewritten beyond recognition
        waited = (max(ready) - begin) / 1e6 if ready else 0.0
        shares.append((feeding + waited) / (feeding + (end - begin) / 1e6))
    return statistics.median(shares)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(bound: dict, pipelines: dict[str, dict]) -> str:
    head = (f"{'pipeline':<10} {'pipeline ex/s':>13} {'(CPU us/ex)':>11} {'train ex/s':>10} {'ratio':>6} "
            f"{'input wait':>10} {'CPU us/ex':>9} {'first batch s':>13}")
    lines = [head, "-" * len(head),
             f"{'bound':<10} {'':>13} {'':>11} {bound['examples_per_sec']:>10.1f} {1:>6.3f} {'':>10} "
             f"{bound['cpu_us_per_example']:>9.0f} {'':>13}"]
    for name, p in pipelines.items():
        first = f"{p['first_batch_sec']:.2f}" + (f" (fill {p['queue_fill_sec']:.2f})" if "queue_fill_sec" in p
                                                  else "")
        lines.append(f"{name:<10} {p['pipeline_examples_per_sec']:>13.1f} {p['pipeline_cpu_us_per_example']:>11.0f} "
                     f"{p['train_examples_per_sec']:>10.1f} "
                     f"{p['ratio_to_bound']:>6.3f} {_share(p['input_wait_share']):>10} "
                     f"{p['train_cpu_us_per_example']:>9.0f} {first:>13}")
    return "\n".join(lines)


def bench(make_parts: Callable[[str, str], Parts], names: list[str], precisions: list[str], s: BenchSettings,
          run_dir: str, config: dict) -> dict:
    """Measures the bound, then each pipeline in ``names``, in each of ``precisions`` (``make_parts(pipeline,
    precision)``); with several precisions, also each bound against the first's, window by window. Prints a table
    and writes bench.json (the first precision's figures at its top level, every precision's under "precisions")."""
    started = time.time()
    by_precision, tables = {}, []
    for precision in precisions:
        if len(precisions) > 1:
            log.info("Precision %s", precision)
        by_precision[precision] = _bench_one(make_parts, names, precision, s, run_dir, config)
        tables.append((f"precision {precision}\n" if len(precisions) > 1 else "") + by_precision[precision].pop("table"))
    table = "\n".join(tables)
    out = {**by_precision[precisions[0]], "precision": precisions[0]}
    if len(precisions) > 1:
        out["precisions"] = by_precision
        out["precision_bounds"] = _paired_bounds(make_parts, names[0], precisions, s)
        table += "\n" + "\n".join(f"bound in {p}: {r['examples_per_sec']:.1f} examples/sec, {r['ratio']:.3f} x the bound "
                                   f"in {precisions[0]} (paired windows)"
                                   for p, r in out["precision_bounds"].items())
    for line in table.splitlines():
        log.info(line)
    out.update(wall_time_sec=time.time() - started, settings=s.__dict__, config=config)
    (Path(run_dir) / "bench.json").write_text(json.dumps(out, indent=2) + "\n")
    (Path(run_dir) / "bench.txt").write_text(table + "\n")
    log.info("Results in %s (bench.json, bench.txt)", run_dir)
    return out


def _bench_one(make_parts: Callable[[str, str], Parts], names: list[str], precision: str, s: BenchSettings,
               run_dir: str, config: dict) -> dict:
    parts = make_parts(names[0], precision)
    results, bound_windows = {}, []
    with bound_runner(parts, s) as bound_step:
        log.info("Model-only bound: %d warm-up steps", s.warmup_steps)
        for _ in range(s.warmup_steps):
            bound_step()
        for name in names:
            log.info("Measuring pipeline %s (%d windows of %d steps, each paired with a window of the bound)",
                     name, s.windows, s.steps_per_window)
            results[name] = measure_pipeline(make_parts(name, precision), s, bound_step, bound_windows)
            if s.training_run:
                log.info("Training run with pipeline %s: the real loop (hooks, summaries, progress lines)", name)
                results[name].update(training_run(make_parts(name, precision), s, run_dir, name, config,
                                                  results[name], bound_step))
    bound = {"examples_per_sec": statistics.median(b[0] for b in bound_windows),
             "cpu_us_per_example": statistics.median(b[1] for b in bound_windows),
             "window_examples_per_sec": [b[0] for b in bound_windows]}
    table = _table(bound, results)
    runs = [f"{name:<10} training run {p['training_run_examples_per_sec']:.1f} examples/sec, "
            f"{p['training_run_ratio_to_bound']:.3f} x the bound = {p['training_run_ratio_to_bench']:.3f} x the "
            f"bench's train figure"
            for name, p in results.items() if "training_run_examples_per_sec" in p]
    return {"bound_examples_per_sec": bound["examples_per_sec"],
            "bound_cpu_us_per_example": bound["cpu_us_per_example"],
            "bound_window_examples_per_sec": bound["window_examples_per_sec"],
            "pipelines": results, "devices": parts.devices, "table": "\n".join([table, *runs])}


def _paired_bounds(make_parts: Callable[[str, str], Parts], name: str, precisions: list[str], s: BenchSettings
                   ) -> dict:
    """Each precision's bound against the first precision's, windows alternating (the first's, then the other's),
    the ratio the median of the paired windows."""
    out = {}
    parts = make_parts(name, precisions[0])
    examples = s.batch_size * len(parts.devices)
    with bound_runner(parts, s) as reference:
        for precision in precisions[1:]:
            with bound_runner(make_parts(name, precision), s) as other:
                for _ in range(s.warmup_steps):
                    reference()
                    other()
                pairs = [(_timed(reference, s.steps_per_window, examples)[0],
                          _timed(other, s.steps_per_window, examples)[0]) for _ in range(s.windows)]
            out[precision] = {"examples_per_sec": statistics.median(o for _, o in pairs),
                              "reference_examples_per_sec": statistics.median(r for r, _ in pairs),
                              "ratio": statistics.median(o / r for r, o in pairs),
                              "windows": [list(p) for p in pairs]}
    return out
