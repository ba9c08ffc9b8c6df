"""The bench's measurements: what an input method costs, measured against the model's own bound.

The bound is the same train op fed from a constant in-graph batch (one per tower). For each pipeline it measures
batches pulled with no training (pipeline-only examples/s), training examples/s, the ratio to the bound, the share
of step time spent waiting for input (from traced steps), process CPU microseconds per example, and the time to
the first batch (for the queue, the shuffle queue's fill is reported on its own). Warm-up steps are excluded; each
number is the median of several timed windows. The bound's windows for a pipeline bracket its training windows
(right before its session opens and right after it closes), so that a shared machine's drifts affect both alike
while no thread of the pipeline runs beside the bound.
"""
from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from runner.config.schema import RunnerConfig
from runner.engine.graph import build_train_graph
from runner.engine.hooks import FeedHook
from runner.engine.model import Parts
from runner.engine.session import session
from runner.pipelines.base import Batch, merged_feed

v1 = tf.compat.v1
log = logging.getLogger("runner")


def timed(run_once: Callable[[], None], steps: int, examples_per_step: int) -> tuple[float, float]:
    """(examples/s, process CPU microseconds per example) over ``steps`` runs."""
    wall, proc = time.perf_counter(), time.process_time()
    for _ in range(steps):
        run_once()
    wall, proc = time.perf_counter() - wall, time.process_time() - proc
    examples = steps * examples_per_step
    return examples / wall, proc / examples * 1e6


def window_figures(windows: list[tuple[float, float]]) -> dict:
    """The figures of timed windows ((examples/s, CPU us per example) each): their medians, and every window's rate."""
    return {"examples_per_sec": statistics.median(w[0] for w in windows),
            "cpu_us_per_example": statistics.median(w[1] for w in windows),
            "window_examples_per_sec": [w[0] for w in windows]}


def _windows(run_once: Callable[[], None], run: RunnerConfig, examples_per_step: int) -> dict:
    """Median examples/s and CPU microseconds per example over the timed windows, after warm-up."""
    for _ in range(run.bench.warmup_steps):
        run_once()
    return window_figures([timed(run_once, run.bench.steps_per_window, examples_per_step)
                           for _ in range(run.bench.windows)])


@contextlib.contextmanager
def bound_runner(parts: Parts, run: RunnerConfig) -> Iterator[Callable[[], None]]:
    """Runs one step of the model-only bound: the train op on a constant batch (a real, preprocessed training
    batch per tower), in a session kept open for the whole benchmark."""
    images, labels = parts.dataset.arrays("train")
    rng = np.random.default_rng(run.seed)
    n = len(labels)

    def constant_batches() -> list[Batch]:
        out = []
        for _ in parts.devices:
            idx = rng.choice(n, run.batch_size, replace=n < run.batch_size)
            x = parts.dataset.preprocess_np(images[idx], True, rng)
            out.append(Batch(tf.constant(x), tf.constant(labels[idx]), n))
        return out

    bound = build_train_graph(parts, run.batch_size, run.seed, run.moving_average_decay, constant_batches)
    with session(bound.graph, parts.session_config, []) as (sess, _):
        yield lambda: sess.run(bound.train_op)


def measure_pipeline(parts: Parts, run: RunnerConfig, bound: Callable[[], None], bound_windows: list) -> dict:
    """Pipeline-only and training throughput against the bound. The bound's windows are timed right before the
    pipeline's session opens and right after it closes (half each): windows of it timed while the pipeline's
    threads fill their buffers beside it would be slower than the model alone, and flatter the pipeline. The
    training windows run back to back, the pipeline in its steady state; the ratio to the bound is their median
    over the median of the bound's windows around them, so a shared machine's drifts cancel out."""
    train_graph = build_train_graph(parts, run.batch_size, run.seed, run.moving_average_decay)
    graph, batches, train_op = train_graph.graph, train_graph.batches, train_graph.train_op
    pulls = [b.pull() for b in batches]
    fills = [(b.fill_size, b.fill_target) for b in batches if b.fill_size is not None]
    examples_per_step = train_graph.examples_per_step
    result = {}
    before = (run.bench.windows + 1) // 2
    around = [timed(bound, run.bench.steps_per_window, examples_per_step) for _ in range(before)]
    start = time.perf_counter()
    with session(graph, parts.session_config, batches, hooks=[FeedHook(batches)]) as (sess, _):
        if fills:  # the queue fills before its first batch can leave; timed on its own
            while any(sess.run(size) < target for size, target in fills):
                time.sleep(0.01)
            result["queue_fill_sec"] = time.perf_counter() - start
        sess.run(pulls)
        result["first_batch_sec"] = time.perf_counter() - start
        pipeline_only = _windows(lambda: sess.run(pulls), run, examples_per_step)

        def train_step():
            sess.run(train_op)

        for _ in range(run.bench.warmup_steps):
            train_step()
        trained = [timed(train_step, run.bench.steps_per_window, examples_per_step)
                   for _ in range(run.bench.windows)]
        traced = max(3, run.bench.windows)
        result["input_wait_share"] = sess.run_step_fn(
            lambda step_context: _input_wait_share(step_context.session, train_op, batches, steps=traced))
    around += [timed(bound, run.bench.steps_per_window, examples_per_step)
               for _ in range(run.bench.windows - before)]
    bound_windows.extend(around)
    train_rate = statistics.median(t[0] for t in trained)
    result.update(pipeline_examples_per_sec=pipeline_only["examples_per_sec"],
                  pipeline_cpu_us_per_example=pipeline_only["cpu_us_per_example"],
                  train_examples_per_sec=train_rate,
                  train_cpu_us_per_example=statistics.median(t[1] for t in trained),
                  ratio_to_bound=train_rate / statistics.median(b[0] for b in around),
                  train_window_examples_per_sec=[t[0] for t in trained],
                  bound_window_examples_per_sec=[b[0] for b in around])
    return result


def _input_wait_share(sess, train_op, batches: list[Batch], steps: int) -> float | None:
    """On the raw session (the pipeline fed here, not by the hooks), the median share of a training step spent
    before its input was ready, from traced steps: Python feeding time plus the time until the ops producing the
    batch tensors finished, over feeding plus the step's span."""
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
