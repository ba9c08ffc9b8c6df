"""The checks of a composed config that its types cannot make: ranges and choices (from the schemas' field
metadata), keys that are set, and the rules between keys. Each raises ConfigError naming the key and what is
allowed. They read the schemas alone (the parts' facts are ClassVars on them), never a part.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.config import packages
from runner.config.fields import POOL
from runner.config.hydra import CONF_DIR, experiments_folder, with_pipeline
from runner.config.schema import (
    BENCH_ARMS,
    GROUPS,
    INT_MAX,
    PRECISIONS,
    SCHEMAS,
    SPLITS,
    TRACKING_SCHEMES,
    RunnerConfig,
    keys_tagged,
)
from runner.core.errors import ConfigError
from runner.core.files import shown
from runner.core.results import compared, objective_paths, objectives

_ABSENT = object()


def _check_field(path: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(str(choice) for choice in meta["choices"])
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of: {allowed}")
    if isinstance(value, str) and not value.strip() and not (value and meta.get("blank")):
        raise ConfigError(f"{path} is empty; give it a value")
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if isinstance(value, int) and not isinstance(value, bool) and lo is not None:
        hi = INT_MAX if hi is None else hi
    if (lo is None and hi is None) or value == meta.get("auto"):
        return
    bad = isinstance(value, float) and not math.isfinite(value) and not (
        value == math.inf and meta.get("infinite") and hi is None)
    bad = bad or (lo is not None and (value <= lo if lo_open else value < lo))
    bad = bad or (hi is not None and value > hi)
    if bad:
        left = "(" if lo_open else "["
        rng = f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        auto = f" or {meta['auto']}" if meta.get("auto") is not None else ""
        raise ConfigError(f"{path}={value} is out of range; allowed: {rng}{auto}")


def _walk(node: DictConfig, prefix: str, schema: Any) -> None:
    """Checks every key of ``node`` against its dataclass ``schema``: known, set, and in range."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node.keys():
        path = f"{prefix}{key!s}"
        if key not in fields:
            known = ", ".join(f for f in fields if f != "name")
            raise ConfigError(f"{path} is not a known key; the keys here are: {known}")
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"{path} has no value; set it ({path}=...)")
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            sub = OmegaConf.get_type(child)
            if dataclasses.is_dataclass(sub):
                _walk(child, path + ".", sub)
        elif isinstance(child, ListConfig):
            _check_list(path, node[key], fields[key].metadata)
        else:
            _check_field(path, node[key], fields[key].metadata)


def _check_list(path: str, values: ListConfig, meta: Mapping[str, Any]) -> None:
    """A list of ``length`` values (when the schema says how many), each in the field's range."""
    if "length" in meta and len(values) != meta["length"]:
        raise ConfigError(f"{path}={list(values)} must hold {meta['length']} values")
    if meta.get("lo") is not None or meta.get("hi") is not None:
        for index, value in enumerate(values):
            try:
                _check_field(f"{path}[{index}]", value, meta)
            except ConfigError as err:
                raise ConfigError(f"{path}={list(values)}: {err}") from None


def group_schema(cfg: DictConfig, group: str) -> Any:
    schema = OmegaConf.get_type(cfg[group])
    if not dataclasses.is_dataclass(schema):
        name = cfg[group].get("name", "?")
        raise ConfigError(f"{group}={name} has no schema: conf/{group}/{name}.yaml must start from one "
                          f"(defaults: [/schema/{group}/NAME@_here_, _self_]; schemas are in runner/config/)")
    return schema


TUNE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
TUNE_HEADER = "# Written by mode=tune"


def check_config(cfg: DictConfig) -> None:
    """Checks every key against its schema (known, set, in range) and the rules between keys; raises ConfigError
    naming the key and what is allowed. (runner.run.validate adds the dataset's checks.)"""
    for group in GROUPS:
        group_schema(cfg, group)
    _walk(cfg, "", RunnerConfig)
    for split in cfg.eval_splits:
        if split not in SPLITS:
            raise ConfigError(f"eval_splits contains {split!r}; known splits: {', '.join(sorted(SPLITS))}")
    for group in ("pipeline", "model"):
        if cfg[group].name not in known(group):
            raise ConfigError(f"{group}.name={cfg[group].name!r} is not known; choose one of: "
                              f"{', '.join(known(group))}")
    trainers = ["auto", *packages.trainer_names()]
    if cfg.trainer not in trainers:
        raise ConfigError(f"trainer={cfg.trainer!r} is not known; choose one of: {', '.join(trainers)}")
    if cfg.trainer == "single" and cfg.hardware.num_devices > 1:
        raise ConfigError(f"trainer=single runs on one device but hardware={cfg.hardware.name} has "
                          f"{cfg.hardware.num_devices}; use trainer=auto or trainer=towers, or hardware=cpu")
    if cfg.profile is not None and not (len(cfg.profile) == 2 and 1 <= cfg.profile[0] <= cfg.profile[1]):
        raise ConfigError(f"profile={list(cfg.profile)} is not a range of steps; give [first, last] with "
                          f"1 <= first <= last, e.g. profile=[100,110], or profile=null")
    for precision in cfg.bench.precisions or []:
        if precision not in PRECISIONS:
            raise ConfigError(f"bench.precisions contains {precision!r}; choose from: {', '.join(PRECISIONS)}")
    for name in cfg.bench.pipelines or []:
        if name not in known("pipeline") and name not in BENCH_ARMS:
            raise ConfigError(f"bench.pipelines contains {name!r}; known pipelines: {', '.join(known('pipeline'))} "
                              f"(and {', '.join(BENCH_ARMS)}: tf.data's own AUTOTUNE settings)")
    check_service_arms(cfg)
    for name in cfg.tune.pipelines or []:
        if name not in known("pipeline"):
            raise ConfigError(f"tune.pipelines contains {name!r}; known pipelines: {', '.join(known('pipeline'))}")
    check_tune_name(cfg)
    check_tune_knobs(cfg)
    if group_schema(cfg, "hardware").processes != "one" and cfg.mode in ("bench", "tune"):
        raise ConfigError(f"mode={cfg.mode} measures one process; hardware={cfg.hardware.name} is for training "
                          f"(use hardware=cpu or a towers option)")
    check_service(cfg)
    check_report(cfg)
    check_tracking(cfg.tracking)
    check_schedule(cfg.schedule)
    check_deterministic(cfg)
    check_watch(cfg)


def check_deterministic(cfg: DictConfig) -> None:
    """deterministic=true needs an input whose order is the same in every run: refused, naming the setting, where
    timing decides it."""
    if not cfg.deterministic:
        return
    pipeline = cfg.pipeline
    why = None
    if pipeline.name == "queue":
        why = ("pipeline=queue: shuffle_batch takes each batch from what its threads have queued by then, which "
               "timing decides; use pipeline=tf_data, feed_dict or preloaded")
    elif pipeline.get("deterministic") is False:
        why = "pipeline.deterministic=false: tf.data hands out batches as they are ready; set it to true"
    elif pipeline.get("service") is not None:
        why = (f"pipeline.service={pipeline.service}: the service's workers hand out batches as they make them; use "
               f"pipeline.service=null")
    elif group_schema(cfg, "hardware").processes != "one":
        why = f"hardware={cfg.hardware.name}: a cluster's workers update the variables in the order they reach the ps"
    if why is not None:
        raise ConfigError(f"deterministic=true with {why} (or deterministic=false)")


def check_schedule(schedule: DictConfig) -> None:
    """piecewise_constant: increasing boundaries (steps) and one more multiplier than boundaries, each above 0."""
    if schedule.name != "piecewise_constant":
        return
    bounds, factors = list(schedule.boundaries), list(schedule.multipliers)
    if not bounds or any(b < 1 for b in bounds) or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ConfigError(f"schedule.boundaries={bounds}: give increasing global steps of at least 1, e.g. "
                          f"[30000,60000]")
    if len(factors) != len(bounds) + 1 or any(not f > 0 for f in factors):
        raise ConfigError(f"schedule.multipliers={factors}: give {len(bounds) + 1} multipliers above 0 of "
                          f"optimizer.lr, one more than schedule.boundaries={bounds}")


def check_watch(cfg: DictConfig) -> None:
    """early_stopping.metric and checkpoint.keep_best name a metric this run's evals give (precision_SPLIT of
    eval_splits), in a training loop of one process (a cluster's chief alone evaluates: not yet)."""
    given = [f"precision_{split}" for split in cfg.eval_splits]
    for key, metric in (("early_stopping.metric", cfg.early_stopping.metric),
                        ("checkpoint.keep_best", cfg.checkpoint.keep_best)):
        if metric is None:
            continue
        if metric not in given:
            raise ConfigError(f"{key}={metric} is not a metric this run's evals give; choose one of: "
                              f"{', '.join(given)} (precision_SPLIT of eval_splits={list(cfg.eval_splits)}), or null")
        if group_schema(cfg, "hardware").processes != "one":
            raise ConfigError(f"{key}={metric} with hardware={cfg.hardware.name}: early stopping and the best "
                              f"checkpoint run in one process's training loop, not yet on a cluster; use {key}=null")
    if cfg.recovery.max_trials and group_schema(cfg, "hardware").processes != "one":
        raise ConfigError(f"recovery.max_trials={cfg.recovery.max_trials} with hardware={cfg.hardware.name}: recovery "
                          f"runs in one process's training loop, not yet on a cluster; use recovery.max_trials=0")


def check_tracking(tracking: DictConfig) -> None:
    """tracking=mlflow needs MLflow installed and a store's URI (http://HOST:PORT, sqlite:///PATH, ...)."""
    uri = tracking.uri
    if uri is not None and ("://" not in uri or uri.split("://", 1)[0] not in TRACKING_SCHEMES):
        raise ConfigError(f"tracking.uri={uri} is not a tracking store's URI; give http://HOST:PORT (an mlflow "
                          f"server), sqlite:///PATH (a file), a database URL ({', '.join(TRACKING_SCHEMES[3:])}), "
                          f"or null (sqlite:///mlflow.db in the folder the command runs in)")
    if tracking.name == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("tracking=mlflow needs MLflow, which is not installed: pip install -e '.[mlflow]' (make "
                          "install includes it), or tracking=none")


def check_service(cfg: DictConfig) -> None:
    """pipeline.service is for training runs, and a cluster's tasks share a dispatcher they are given."""
    service = cfg.pipeline.get("service")
    if service is None:
        return
    if cfg.mode in ("bench", "tune"):
        raise ConfigError(f"pipeline.service={service}: mode={cfg.mode} measures the input in this process; run it "
                          f"with pipeline.service=null")
    if service != "local":
        service_address(service)
    processes = group_schema(cfg, "hardware").processes
    if processes == "launcher" and service != "local":
        raise ConfigError(f"pipeline.service={service} with hardware={cfg.hardware.name}: the local cluster's tasks "
                          f"run in a network of their own, which reaches no other dispatcher; use "
                          f"pipeline.service=local (the launcher starts one there), or hardware=cluster tasks")
    if service == "local" and processes == "task":
        raise ConfigError(f"pipeline.service=local with hardware={cfg.hardware.name}: each task would start a "
                          f"service of its own; start one dispatcher (python -m runner.service dispatcher --port P) "
                          f"and give every task pipeline.service=grpc://HOST:P")


SERVICE_SCHEME = "grpc://"


def service_address(service: str) -> tuple[str, int]:
    """pipeline.service's ``grpc://HOST:PORT`` as (HOST, PORT); a ConfigError naming the value otherwise."""
    rest = service[len(SERVICE_SCHEME):] if service.startswith(SERVICE_SCHEME) else ""
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"pipeline.service={service}: give null, local, or a dispatcher's address as "
                          f"grpc://HOST:PORT (python -m runner.service dispatcher --port PORT starts one)")
    return host, int(port)


def check_service_arms(cfg: DictConfig) -> None:
    """bench.service_workers measures tf_data on a local tf.data service beside tf_data in process, whose stages
    predict it; bench.service_cpus are CPUs of this process, some of them left to the bench."""
    workers, cpus = cfg.bench.service_workers, cfg.bench.service_cpus
    if cpus is not None and not workers:
        raise ConfigError("bench.service_cpus pins the service's workers: give bench.service_workers too, e.g. "
                          "bench.service_workers=[1]")
    if not workers:
        return
    if any(not isinstance(n, int) or not 1 <= n <= 64 for n in workers):
        raise ConfigError(f"bench.service_workers={list(workers)}: give worker counts from 1 to 64, e.g. [1, 2]")
    if "tf_data" not in bench_pipelines(cfg):
        raise ConfigError(f"bench.service_workers compares tf_data on the service with tf_data in this process; "
                          f"add tf_data to bench.pipelines={list(cfg.bench.pipelines)}")
    if cpus is not None:
        mine = sorted(os.sched_getaffinity(0))
        if not cpus or any(c not in mine for c in cpus) or len(set(cpus)) >= len(mine):
            raise ConfigError(f"bench.service_cpus={list(cpus)}: give some of this process's CPUs {mine} (not all: "
                              f"the bench runs on the others), e.g. bench.service_cpus=[{mine[0]}]")


def check_report(cfg: DictConfig) -> None:
    """sweep_objective and report.compare name numbers a job reports (checked once for a whole sweep too)."""
    objective = cfg.sweep_objective
    named = [objective] if isinstance(objective, str) else list(objective) if isinstance(objective, ListConfig) else []
    if objective is not None and not named:
        raise ConfigError(f"sweep_objective={objective}: give a number a run reports (final_precision.test), or a "
                          f"list of them for a search of several objectives")
    allowed = objectives(cfg.eval_splits)
    for path, given in zip(objective_paths(objective), named):
        if path not in allowed:
            raise ConfigError(f"sweep_objective={given} is not a number a run reports; choose one of: "
                              f"{', '.join(allowed)} (or their report columns: precision_test, ...)")
    reported = compared(SPLITS, known("pipeline"))
    for metric in cfg.report.compare or []:
        if metric not in reported:
            raise ConfigError(f"report.compare contains {metric!r}, which no job reports; choose from: "
                              f"{', '.join(reported)}")
    for key in cfg.report.replicate_over or []:
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(f"report.replicate_over contains {key!r}, which is not a key of the config; give keys "
                              f"such as seed")


def check_tune_name(cfg: DictConfig) -> None:
    """tune.name is the file mode=tune writes, experiments/NAME.yaml: a plain name, and not an experiment of the
    user's (one mode=tune did not write) unless tune.overwrite=true. Said before the search spends its budget."""
    name = cfg.tune.name
    if name is not None and not TUNE_NAME.fullmatch(name):
        raise ConfigError(f"tune.name={name[:60]!r}{'...' if len(name) > 60 else ''} names the experiment file to "
                          f"write, experiments/NAME.yaml: give a name without a path, of letters, digits, _ . - "
                          f"and at most 100 characters, e.g. tune.name=tuned_mine")
    if cfg.mode != "tune":
        return
    for path in tune_experiments(cfg):
        own = Path(CONF_DIR) / "experiment" / path.name
        if own.exists() and own.resolve() != path.resolve():  # it would shadow the file tune writes
            raise ConfigError(f"tune.name={cfg.tune.name}: experiments/{path.name} exists and mode=tune did not "
                              f"write it: it is one of runner's own experiments, which experiment={path.stem} keeps "
                              f"choosing; choose another tune.name")
    if cfg.tune.overwrite:
        return
    for path in tune_experiments(cfg):
        if path.exists() and not written_by_tune(path):
            raise ConfigError(f"tune.name={cfg.tune.name}: {shown(path)} exists and mode=tune did not write "
                              f"it; choose another tune.name, or set tune.overwrite=true to replace it")


def search_space(cfg: DictConfig, thread_values: tuple[int, ...]) -> dict[str, tuple]:
    """{key: candidate values} for cfg's pipeline (its schema's knobs) and, with tune.threads, the thread pools."""
    schema = group_schema(cfg, "pipeline")
    knobs = {**schema.knobs, **(schema.order_knobs if cfg.tune.allow_order else {})}
    space = {f"pipeline.{k}": tuple(v) for k, v in knobs.items()}
    if cfg.tune.threads:
        space.update({key: thread_values for key in keys_tagged(POOL)})
    if cfg.tune.knobs is None:
        return space
    chosen = {k if k in space else f"pipeline.{k}" for k in cfg.tune.knobs}
    unknown = sorted(k for k in chosen if k not in space)
    if unknown or not chosen:
        raise ConfigError(f"tune.knobs={list(cfg.tune.knobs)}: {', '.join(unknown) or 'no knob'} not in the search "
                          f"space of pipeline={cfg.pipeline.name} here; choose from {', '.join(space)} (the order "
                          f"knobs need tune.allow_order=true, the thread pools tune.threads=true)")
    return {k: v for k, v in space.items() if k in chosen}


def check_tune_knobs(cfg: DictConfig) -> None:
    """tune.knobs names knobs of every pipeline mode=tune searches; said before anything is written."""
    if cfg.mode == "tune" and cfg.tune.knobs is not None:
        for name in tune_pipelines(cfg):
            search_space(with_pipeline(cfg, name, cfg.hardware.precision), (0,))


def tune_experiments(cfg: DictConfig) -> list[Path]:
    """The experiment files mode=tune writes into the user's experiments folder: experiments/NAME.yaml, or
    NAME_<pipeline>.yaml for each of several."""
    name = cfg.tune.name or f"tuned_{cfg.dataset.name}_{cfg.model.name}"
    names = tune_pipelines(cfg)
    folder = experiments_folder()
    return [folder / f"{name}{f'_{p}' if len(names) > 1 else ''}.yaml" for p in names]


def written_by_tune(path: Path) -> bool:
    try:
        return TUNE_HEADER in path.read_text(errors="replace").splitlines()[1]
    except (OSError, IndexError):
        return False


def check_writable(run_dir: str) -> None:
    """The run dir can be made (or is a writable folder)."""
    path = Path(run_dir).expanduser().absolute()
    existing = next(p for p in [path, *path.parents] if _exists(p))
    longest = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    for name in path.relative_to(existing).parts:
        if len(os.fsencode(name)) > longest:
            raise ConfigError(f"run_dir: the folder name {name[:40]}... is {len(os.fsencode(name))} bytes, longer "
                              f"than the {longest} this file system allows; choose a shorter run_dir")
    if existing == path and not path.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file, not a folder; choose another run_dir")
    if not existing.is_dir():
        raise ConfigError(f"run_dir={run_dir}: {existing} is a file, not a folder; choose another run_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir={run_dir}: {existing} is not writable; choose another run_dir")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up: not there
        return False


def known(group: str) -> list[str]:
    """The options a part group registers (pipeline, model), by their schemas' names, without importing them."""
    return sorted(SCHEMAS[group])


def bench_pipelines(cfg: DictConfig) -> list[str]:
    """What mode=bench measures: bench.pipelines, or every pipeline and every arm (BENCH_ARMS)."""
    return list(cfg.bench.pipelines or [*known("pipeline"), *BENCH_ARMS])


def tune_pipelines(cfg: DictConfig) -> list[str]:
    """The pipelines mode=tune searches: tune.pipelines, or the chosen one."""
    return list(cfg.tune.pipelines or [cfg.pipeline.name])


def measured_pipelines(cfg: DictConfig) -> list[str]:
    """The pipelines this mode builds: the bench's, the tune's, or the chosen one."""
    names = bench_pipelines(cfg) if cfg.mode == "bench" else tune_pipelines(cfg) if cfg.mode == "tune" else [
        cfg.pipeline.name]
    return list(dict.fromkeys(BENCH_ARMS[n][0] if n in BENCH_ARMS else n for n in names))
