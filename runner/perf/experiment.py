"""mode=tune's work, which modes/tune.py starts: per pipeline, the search space within memory, the search
(runner.perf.search) measured against tf.data's own autotuner, and the winner written as an experiment file that
only overrides, with the measured rates in its header and the command that uses it."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config.checks import TUNE_HEADER, search_space, tune_experiments, tune_pipelines
from runner.config.hydra import override_key, settings, with_pipeline
from runner.config.schema import BENCH_ARMS
from runner.core.errors import ConfigError, RunnerError
from runner.core.files import write_json, write_text
from runner.core.signals import Interrupted, signal_name
from runner.core.system import available_memory, cores, cpu_model
from runner.datasets.base import Dataset
from runner.engine.topology import Topology
from runner.perf.search import Result, confirmation, gain, search, table, thread_values
from runner.run.build import build_parts, describe, placement
from runner.run.invocation import ALONE, Invocation
from runner.run.runs import naming_damaged_records

log = logging.getLogger("runner")


def within_memory(space: dict[str, tuple], dataset, batch_size: int, free: int) -> dict[str, tuple]:
    """The space without the order knobs' values whose buffers would not fit in half the free memory: the queue's
    min_after_dequeue + 3 batches of model inputs, or tf.data's shuffle buffer of raw examples."""
    n = dataset.num_examples("train")
    model_input = 4 * int(np.prod(dataset.output_shape))
    raw = int(np.prod(dataset.raw_shape)) * np.dtype(dataset.raw_dtype).itemsize
    needs = {"pipeline.min_fraction_of_examples_in_queue": lambda v: (v * n + 3 * batch_size) * model_input,
             "pipeline.shuffle_buffer": lambda v: min(v, n) * raw}
    return {k: tuple(v for v in values if k not in needs or needs[k](v) <= free / 2) for k, values in space.items()}


def _kept(override: str, keys: list[str]) -> bool:
    """A typed override the tuned command keeps: not the mode's own settings, not a group the experiment chooses,
    not a knob it sets."""
    key = override_key(override)
    return not (key in ("mode", "run_dir", "experiment", "dataset", "model", "pipeline") or key in keys
                or key.split(".")[0] in ("bench", "tune"))


def experiment_text(experiment: str, cfg: DictConfig, result, keys: list[str], num_cores: int,
                    overrides: tuple[str, ...]) -> tuple[str, str]:
    """The winner as ``experiment``: the groups chosen and the knobs' values; the file's text and the command
    that uses it (with the command line's ``overrides`` it keeps)."""
    best, start = result.best, result.start
    groups = {"dataset": cfg.dataset.name, "model": cfg.model.name, "pipeline": cfg.pipeline.name}
    values: dict = {}
    for key in keys:
        group, name = key.split(".", 1)
        values.setdefault(group, {})[name] = best.settings[key]
    typed = [o for o in overrides if _kept(o, keys)]
    command = " ".join(["python -m runner", f"experiment={experiment}", *typed])
    header = [
        "# @package _global_",
        f"{TUNE_HEADER} on {time.strftime('%Y-%m-%d')}, {cpu_model()}, {num_cores} cores: {command}",
        f"# tuned with batch_size={cfg.batch_size}, hardware={cfg.hardware.name}; {len(result.trials)} trials in "
        f"{result.secs:.0f} s (tune.budget_secs={cfg.tune.budget_secs:g}), each paired with the starting settings' "
        f"bound",
        f"# start: {' '.join(f'{k}={start.settings[k]}' for k in keys)}: {start.examples_per_sec:,.1f} examples/sec "
        f"({start.ratio:.3f} x the bound; {result.limit['limit']} limits, {result.limit['costliest_stage']} its "
        f"costliest stage)",
        f"# tuned: {best.examples_per_sec:,.1f} examples/sec ({best.ratio:.3f} x the bound, "
        f"{gain(best, start)})",
        *(f"# {line}" for line in confirmation(result)),
        "defaults:",
        *(f"  - override /{group}: {name}" for group, name in groups.items()),
        "",
    ]
    return "\n".join(header) + yaml.safe_dump(values, sort_keys=False), command


def tune(cfg: DictConfig, dataset: Dataset, run_dir: str, invocation: Invocation = ALONE) -> dict:
    """Searches each of ``tune.pipelines``, each in its share of the budget left, and writes each winner."""
    names, paths = tune_pipelines(cfg), tune_experiments(cfg)
    _check_writable(paths[0].parent)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    out, started, unwritten = {}, time.monotonic(), []
    for i, (name, path) in enumerate(zip(names, paths)):
        budget = (cfg.tune.budget_secs - (time.monotonic() - started)) / (len(names) - i)
        result, keys, base = _search_pipeline(cfg, name, dataset, run_dir, invocation, budget, out, first=i == 0)
        out[name], problem = _write_winner(result, keys, base, path, run_dir, invocation)
        unwritten += [problem] if problem else []
    _write_results(run_dir, out)
    log.info("Results in %s (tune.json, tune.txt)", run_dir)
    if unwritten:
        raise RunnerError("; ".join(unwritten))
    return out


def _check_writable(folder: Path) -> None:
    """The experiments folder can be written (or made); said before the search spends its budget."""
    made = next(p for p in (folder, *folder.parents) if p.exists())  # experiments/ is made when the winner is written
    if not made.is_dir() or not os.access(made, os.W_OK):
        raise ConfigError(f"mode=tune writes its winner to {folder}, which is not writable; run it from a folder "
                          f"you can write to, or name another with 'hydra.searchpath=[experiments:///DIR]'")


def _search_pipeline(cfg: DictConfig, name: str, dataset: Dataset, run_dir: str, invocation: Invocation,
                     budget: float, out: dict, first: bool) -> tuple[Result, list[str], DictConfig]:
    """One pipeline's search within ``budget`` seconds: its result, the keys searched and the pipeline's config. A
    signal writes the trials so far (``out`` and this one's) to tune.json and stops the whole tune."""
    base = with_pipeline(cfg, name, cfg.hardware.precision)
    space = within_memory(search_space(base, thread_values()), dataset, cfg.batch_size, available_memory())
    keys = list(space)
    start = {key: OmegaConf.select(base, key) for key in keys}

    def make_parts(values: dict):
        trial = base.copy()
        with open_dict(trial):
            for key, value in values.items():
                OmegaConf.update(trial, key, value)
        run = settings(trial)
        parts = build_parts(run, dataset, Topology(placement(run.hardware, invocation.parallel_jobs)))
        parts.session_config.use_per_session_threads = True  # each trial's pools as it sets them
        return parts

    if first:  # the run's Building: line, once
        describe(settings(cfg), make_parts(start), run_dir)
    log.info("Tuning pipeline %s: %s (budget %.0f s)", name, ", ".join(keys), budget)
    result = Result()
    try:
        with naming_damaged_records(dataset, invocation.overrides):
            search(make_parts, settings(cfg), space, start, budget, grid=cfg.tune.search == "grid", result=result,
                   confirm_rounds=cfg.tune.confirm_rounds, reference=_reference(base, start))
    except Interrupted as err:
        out[name] = {**result.as_dict(), "interrupted": True}
        _write_results(run_dir, out)
        raise Interrupted(f"{signal_name(err.signum)} during the search of pipeline {name}: the "
                          f"{len(result.trials)} trial(s) measured are in {Path(run_dir) / 'tune.json'}; rerun "
                          f"the same command to search again", err.signum) from None
    return result, keys, base


def _write_winner(result: Result, keys: list[str], base: DictConfig, path: Path, run_dir: str,
                  invocation: Invocation) -> tuple[dict, str | None]:
    """The search's table said, its winner written into the run dir and then to ``path``: tune.json's entry, and
    what could not be written (None when all was)."""
    text = table(result, keys)
    for line in text.splitlines():
        log.info(line)
    experiment, command = experiment_text(path.stem, base, result, keys, cores(), invocation.overrides)
    kept = Path(run_dir) / path.name  # first in the run dir: a failed write below loses no search
    write_text(kept, experiment)
    entry = {**result.as_dict(), "experiment": str(path), "kept": str(kept), "command": command, "table": text}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, experiment)
    except OSError as err:
        return entry, (f"cannot write {path}: {err.strerror}; the winner is kept in {kept} (copy it to "
                       f"{path.parent} to use it)")
    log.info("Wrote %s: %s", path, command)
    return entry, None


def _reference(base: DictConfig, start: dict) -> dict | None:
    """The settings tune measures its winner against: for tf_data, tf.data as it runs by default (BENCH_ARMS'
    autotune arm) over the start; None for the other pipelines."""
    pipeline, arm = BENCH_ARMS["autotune"]
    if base.pipeline.name != pipeline:
        return None
    flat = OmegaConf.to_container(OmegaConf.create({"pipeline": arm}))
    keys = {f"pipeline.{k}": v for k, v in flat["pipeline"].items() if not isinstance(v, dict)}
    keys.update({f"pipeline.autotune.{k}": v for k, v in flat["pipeline"]["autotune"].items()})
    return {**start, **keys}


def _write_results(run_dir: str, out: dict) -> None:
    write_json(Path(run_dir) / "tune.json", out, default=str)
    write_text(Path(run_dir) / "tune.txt", "\n\n".join(f"{n}\n{o.get('table', '(interrupted)')}\n{o.get('command', '')}"
                                                      for n, o in out.items()) + "\n")
