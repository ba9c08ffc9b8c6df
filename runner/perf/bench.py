"""mode=bench's measurements over every pipeline and precision: the model-only bound, each pipeline against it
(runner.perf.measure), optionally a real training run per pipeline; printed as a table and written to bench.json
and bench.txt."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import tensorflow as tf

from runner.config.schema import RunnerConfig
from runner.core.files import write_json, write_text
from runner.core.results import BenchResult
from runner.core.signals import Interrupted, signal_name
from runner.core.stats import compare, hint, plus_minus, summarize, verdict
from runner.core.system import cores
from runner.engine.model import Parts
from runner.engine.training import TrainSettings, train
from runner.perf.measure import bound_runner, measure_pipeline, timed, window_figures
from runner.perf.stages import attribution, limit_line, served_line, served_prediction, stage_rates, stage_table

v1 = tf.compat.v1
log = logging.getLogger("runner")
Serve = Callable[[int], contextlib.AbstractContextManager[str]]  # a tf.data service of N workers: its address


def training_run(parts: Parts, run: RunnerConfig, run_dir: str, name: str, config: dict, measured: dict,
                 bound: Callable[[], None]) -> dict:
    """Trains with the real loop (runner.engine.training.train, in ``run_dir/training_<pipeline>``) for as many
    steps as the bench's windows (the warm-up rounded up to whole windows), bracketed by windows of the bound as the
    bench's pipelines are (half before, half after). Its examples/sec is the median of its windows after the
    warm-up; its ratio to the bench is that over the median bound window, over the pipeline's ratio to the bound."""
    per_window = run.bench.steps_per_window
    warmup = -(-run.bench.warmup_steps // per_window) * per_window  # progress lines fall on windows' ends
    steps = warmup + run.bench.windows * per_window
    out = Path(run_dir) / f"training_{name}"
    examples = run.batch_size * len(parts.devices)
    before = (run.bench.windows + 1) // 2
    around = [timed(bound, per_window, examples)[0] for _ in range(before)]
    # The loop's lines fall on the bench's windows; it checkpoints once, at its end, and evaluates nothing.
    loop = dataclasses.replace(TrainSettings.of(run), max_steps=steps, log_every=per_window, checkpoint_every=steps,
                               keep_checkpoints=1, eval_splits=[], progress="lines", profile=None)
    train(parts, loop, out, config)
    around += [timed(bound, per_window, examples)[0] for _ in range(run.bench.windows - before)]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    windows = [m["examples_per_sec"] for m in lines if "examples_per_sec" in m and m["step"] > warmup]
    ratio = statistics.median(windows) / statistics.median(around)
    return {"training_run_examples_per_sec": statistics.median(windows),
            "training_run_ratio_to_bound": ratio,
            "training_run_ratio_to_bench": ratio / measured["ratio_to_bound"],
            "training_run_window_examples_per_sec": windows,
            "training_run_bound_window_examples_per_sec": around}


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ratio(p: dict) -> str:
    """The ratio to the bound; over several rounds, with half its 95% interval."""
    if "ratio_to_bound_interval" not in p:
        return f"{p['ratio_to_bound']:.3f}"
    low, high = p["ratio_to_bound_interval"]
    return plus_minus(p["ratio_to_bound"], (high - low) / 2)


def _table(bound: dict, pipelines: dict[str, dict]) -> str:
    w = max([6] + [len(_ratio(p)) for p in pipelines.values()])  # the ratio, with its interval over rounds
    n = max([10] + [len(name) for name in pipelines])
    head = (f"{'pipeline':<{n}} {'pipeline ex/s':>13} {'(CPU us/ex)':>11} {'train ex/s':>10} {'ratio':>{w}} "
            f"{'input wait':>10} {'CPU us/ex':>9} {'first batch s':>13}")
    lines = [head, "-" * len(head),
             f"{'bound':<{n}} {'':>13} {'':>11} {bound['examples_per_sec']:>10.1f} {'1.000':>{w}} {'':>10} "
             f"{bound['cpu_us_per_example']:>9.0f} {'':>13}"]
    for name, p in pipelines.items():
        first = f"{p['first_batch_sec']:.2f}" + (f" (fill {p['queue_fill_sec']:.2f})" if "queue_fill_sec" in p
                                                  else "")
        lines.append(f"{name:<{n}} {p['pipeline_examples_per_sec']:>13.1f} {p['pipeline_cpu_us_per_example']:>11.0f} "
                     f"{p['train_examples_per_sec']:>10.1f} {_ratio(p):>{w}} {_share(p['input_wait_share']):>10} "
                     f"{p['train_cpu_us_per_example']:>9.0f} {first:>13}")
    return "\n".join(lines)


def bench(make_parts: Callable[..., Parts], names: list[str], precisions: list[str], run: RunnerConfig,
          run_dir: str, config: dict, serve: Serve | None = None) -> BenchResult:
    """Measures the bound, then each pipeline in ``names``, in each of ``precisions`` (``make_parts(pipeline,
    precision)``); with several precisions, also each bound against the first's, window by window. Prints a table
    and writes bench.json (the first precision's figures at its top level, every precision's under "precisions")."""
    started = time.time()
    by_precision, tables = {}, []
    stopped = None
    for precision in precisions:
        if len(precisions) > 1:
            log.info("Precision %s", precision)
        try:
            by_precision[precision] = _bench_one(make_parts, names, precision, run, run_dir, config, serve)
        except Interrupted as err:
            if not by_precision:
                raise
            stopped = err
            break
        heading = f"precision {precision}\n" if len(precisions) > 1 else ""
        tables.append(heading + by_precision[precision].pop("table"))
        stopped = by_precision[precision].pop("interrupted", None)
        if stopped is not None:
            break
    table = "\n".join(tables)
    out = cast(BenchResult, {**by_precision[precisions[0]], "precision": precisions[0]})
    if len(precisions) > 1 and stopped is None:
        out["precisions"] = by_precision
        out["precision_bounds"] = _paired_bounds(make_parts, names[0], precisions, run)
        table += "\n" + "\n".join(f"bound in {p}: {r['examples_per_sec']:.1f} examples/sec, {r['ratio']:.3f} x the "
                                   f"bound in {precisions[0]} (paired windows)"
                                   for p, r in out["precision_bounds"].items())
    for line in table.splitlines():
        log.info(line)
    out["wall_time_sec"], out["settings"], out["config"] = time.time() - started, _settings(run), config
    if stopped is not None:
        out["interrupted"] = signal_name(stopped.signum)
    write_json(Path(run_dir) / "bench.json", out)
    write_text(Path(run_dir) / "bench.txt", table + "\n")
    if stopped is not None:
        raise Interrupted(f"{signal_name(stopped.signum)}: the bench stopped; what it finished (whole rounds of "
                          f"every pipeline) is in {Path(run_dir) / 'bench.json'} (\"interrupted\" set). Rerun the "
                          f"same command to measure again", stopped.signum)
    log.info("Results in %s (bench.json, bench.txt)", run_dir)
    return out


def _bench_one(make_parts: Callable[..., Parts], names: list[str], precision: str, run: RunnerConfig,
               run_dir: str, config: dict, serve: Serve | None) -> dict:
    """The bound, then each pipeline against it; with ``bench.repeats`` > 1 the whole measurement in rounds, the
    pipelines' order rotating from round to round, so that each pipeline's figures are means over rounds with
    intervals and two pipelines can be compared round by round."""
    parts = make_parts(names[0], precision)
    arms = service_arms(run) if serve is not None else {}
    rounds: dict[str, list[dict]] = {name: [] for name in [*names, *arms]}
    bound_windows: list = []
    training: dict[str, dict] = {}
    repeats = run.bench.repeats
    stopped: Interrupted | None = None
    with bound_runner(parts, run) as bound_step, contextlib.ExitStack() as services:
        served = {arm: services.enter_context(serve(n)) for arm, n in arms.items()}

        def parts_of(name: str) -> Parts:
            return make_parts("tf_data", precision, served[name]) if name in served else make_parts(name, precision)

        log.info("Model-only bound: %d warm-up steps", run.bench.warmup_steps)
        for _ in range(run.bench.warmup_steps):
            bound_step()
        try:
            for r in range(repeats):
                if repeats > 1:
                    log.info("Round %d of %d", r + 1, repeats)
                order = list(rounds)
                for name in order[r % len(order):] + order[:r % len(order)]:
                    log.info("Measuring pipeline %s (%d windows of %d steps, each paired with a window of the "
                             "bound)", name, run.bench.windows, run.bench.steps_per_window)
                    rounds[name].append(measure_pipeline(parts_of(name), run, bound_step, bound_windows))
                    if run.bench.training_run and r == 0 and name not in arms:
                        log.info("Training run with pipeline %s: the real loop (hooks, summaries, progress lines)",
                                 name)
                        training[name] = training_run(make_parts(name, precision), run, run_dir, name, config,
                                                      rounds[name][0], bound_step)
        except Interrupted as err:  # the finished rounds are kept; a round half done is not
            stopped = err
            finished = min(len(v) for v in rounds.values())
            if finished == 0:
                raise
            rounds = {name: v[:finished] for name, v in rounds.items()}
    results = {name: {**_over_rounds(rounds[name]), **training.get(name, {})} for name in rounds}
    bound = window_figures(bound_windows)
    arm_lines = [SERVICE_ARM] if arms else []
    for arm, n in arms.items():
        p = results[arm]
        p.update(service_workers=n, service_cpus=run.bench.service_cpus,
                 predicted=served_prediction(results["tf_data"], p, bound, n, run.bench.service_cpus, cores()))
        arm_lines.append(served_line(arm, p, results["tf_data"]))
    stage_lines = []
    if run.bench.stages and stopped is None:
        num_cores = cores()
        try:
            for name in names:
                log.info("Timing the stages of pipeline %s", name)
                p = results[name]
                p["stages"] = stage_rates(lambda name=name: make_parts(name, precision).pipeline,
                                          parts.session_config, run.batch_size, run.bench.windows, p)
                p["attribution"] = attribution(p["stages"], p, bound, num_cores)
                stage_lines.append(limit_line(name, p["stages"], p["attribution"]))
        except Interrupted as err:
            stopped = err
        stage_lines = ["", stage_table(results), *stage_lines] if stage_lines else []
    table = "\n".join([_table(bound, results), BOUND_BUILT, *filter(None, (_above_bound(name, p)
                                                                          for name, p in results.items()))])
    runs = [f"{name:<10} training run {p['training_run_examples_per_sec']:.1f} examples/sec, "
            f"{p['training_run_ratio_to_bound']:.3f} x the bound = {p['training_run_ratio_to_bench']:.3f} x the "
            f"bench's train figure"
            for name, p in results.items() if "training_run_examples_per_sec" in p]
    compared = _compared(rounds) if repeats > 1 else []
    return {"bound_examples_per_sec": bound["examples_per_sec"],
            "bound_cpu_us_per_example": bound["cpu_us_per_example"],
            "bound_window_examples_per_sec": bound["window_examples_per_sec"],
            "pipelines": results, "devices": parts.devices, "repeats": repeats,
            **({"comparisons": [c for c, _ in compared]} if compared else {}),
            **({"interrupted": stopped} if stopped is not None else {}),
            "table": "\n".join([table, *runs, *arm_lines, *[line for _, line in compared], *stage_lines])}


SERVICE_ARM = ("tf_data_serviceN: tf_data's training batches from a tf.data service this bench started (a dispatcher "
               "and N worker processes); CPU us/ex is this process's alone, the trainer's")


def service_arms(run: RunnerConfig) -> dict[str, int]:
    """bench.service_workers as arms: each one's name and worker count."""
    return {f"tf_data_service{n}": n for n in run.bench.service_workers or []}


BOUND_BUILT = ("bound: the same train op on a constant batch (a real preprocessed training batch per tower), in a "
               "session of the same config (thread pools) as the pipelines'; a pipeline's training windows are "
               "bracketed by windows of it, timed before its session opens and after it closes (no thread of the "
               "pipeline beside them)")
ABOVE_BOUND_SLACK = 0.03  # a single round's ratio may pass 1 by this much from window-to-window noise


def _above_bound(name: str, p: dict) -> str | None:
    """The line saying that a pipeline trained faster than the bound beyond its noise: the bound and the pipeline
    did not run under the same conditions (the machine's load changed), so neither figure can be trusted."""
    ratio = p["ratio_to_bound"]
    low = p["ratio_to_bound_interval"][0] if "ratio_to_bound_interval" in p else ratio - ABOVE_BOUND_SLACK
    if low <= 1:
        return None
    said = (f"warning: {name} trained at {ratio:.3f} x the model-only bound, above it beyond its noise: the machine's "
            f"load changed between its windows and the bound's, so these figures do not measure the input; rerun on "
            f"a quieter machine"
            + ("" if "ratio_to_bound_interval" in p else ", or with bench.repeats=5 for intervals"))
    log.warning(said)
    return said


def _over_rounds(rounds: list[dict]) -> dict:
    """One pipeline's figures: a single round's as they are; over several, each number's mean, the ratio to the
    bound with its standard deviation and 95% interval, and every round's figures under "rounds"."""
    if len(rounds) == 1:
        return rounds[0]
    out = {}
    for key, first in rounds[0].items():
        values = [r.get(key) for r in rounds]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.fmean(values)
        elif all(isinstance(v, list) for v in values):  # windows: every round's
            out[key] = [w for v in values for w in v]
        else:  # a figure some round could not take (None): the first round's
            out[key] = first
    ratio = summarize([r["ratio_to_bound"] for r in rounds])
    out.update(ratio_to_bound_std=ratio.std, ratio_to_bound_interval=[ratio.low, ratio.high], rounds=rounds)
    return out


def _compared(rounds: dict[str, list[dict]]) -> list[tuple[dict, str]]:
    """Every two pipelines' ratios to the bound, paired round by round (the rounds ran back to back): the
    difference, its interval and whether it is told from noise; faster pipelines first."""
    ratios = {name: [r["ratio_to_bound"] for r in found] for name, found in rounds.items()}
    order = sorted(ratios, key=lambda n: -statistics.fmean(ratios[n]))
    out = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            c = compare(dict(enumerate(ratios[a])), dict(enumerate(ratios[b])))
            if c is None:
                continue
            more = hint(c, rounds=True)
            line = (f"{a} − {b}: {plus_minus(c.diff, c.half_width, signed=True)} in ratio to the bound "
                    f"(n={c.n_a} rounds, {c.test} by round, p={c.p:.2g}): {verdict(c)}" + (f"; {more}" if more else ""))
            out.append(({"pipelines": [a, b], **c.as_dict(), "n": c.n_a, "text": line}, line))
    return out


def _paired_bounds(make_parts: Callable[[str, str], Parts], name: str, precisions: list[str], run: RunnerConfig
                   ) -> dict:
    """Each precision's bound against the first precision's, windows alternating (the first's, then the other's),
    the ratio the median of the paired windows."""
    out = {}
    parts = make_parts(name, precisions[0])
    examples = run.batch_size * len(parts.devices)
    with bound_runner(parts, run) as reference:
        for precision in precisions[1:]:
            with bound_runner(make_parts(name, precision), run) as other:
                for _ in range(run.bench.warmup_steps):
                    reference()
                    other()
                pairs = [(timed(reference, run.bench.steps_per_window, examples)[0],
                          timed(other, run.bench.steps_per_window, examples)[0]) for _ in range(run.bench.windows)]
            out[precision] = {"examples_per_sec": statistics.median(o for _, o in pairs),
                              "reference_examples_per_sec": statistics.median(r for r, _ in pairs),
                              "ratio": statistics.median(o / r for r, o in pairs),
                              "windows": [list(p) for p in pairs]}
    return out


def _settings(run: RunnerConfig) -> dict:
    """The settings a bench ran with, for bench.json."""
    return {"batch_size": run.batch_size, "seed": run.seed, "moving_average_decay": run.moving_average_decay,
            "summary_every": run.summary_every, **dataclasses.asdict(run.bench)}
