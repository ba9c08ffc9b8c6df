"""Hydra's side of the config: the schemas in its ConfigStore, composing a config from overrides, and typing a
config read from a file (a run's saved one) by the schemas again."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, cast

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config import packages
from runner.config.schema import BENCH_ARMS, GROUPS, SCHEMAS, RunnerConfig
from runner.core.errors import ConfigError

CONF_DIR = str(packages.OWN_CONF)  # runner/conf: package data; installed packages add theirs
EXPERIMENTS_SCHEME = "experiments://"  # hydra_plugins.runner_experiments: a folder of experiment files


@functools.cache  # once per process
def register_schemas() -> None:
    """The schemas in Hydra's ConfigStore: ``runner_schema`` (conf/config.yaml's first default) and
    ``schema/GROUP/NAME`` (each option YAML's)."""
    packages.found()  # installed packages' schemas join runner's
    store = ConfigStore.instance()
    store.store(name="runner_schema", node=RunnerConfig)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


def compose_config(overrides: list[str]) -> DictConfig:
    """The config ``python -m runner OVERRIDES`` runs, composed by Hydra's compose API: inside the running app, or
    on its own."""
    register_schemas()
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def compose_group(group: str, option: str) -> DictConfig:
    """A group option as Hydra composes it (its YAML on its schema)."""
    return compose_config([f"{group}={option}"])[group]


def schema_of(group: str, option: str) -> Any:
    """The schema an option's YAML starts from (its ``/schema/GROUP/NAME@_here_`` default)."""
    path = packages.option_file(group, option)
    if not path.exists():
        raise ConfigError(f"{group}={option} is an option of neither runner nor an installed package: a run made "
                          f"with a package's parts needs that package installed (docs/packages.md)")
    entries = cast(DictConfig, OmegaConf.load(path)).get("defaults", [])
    for entry in entries:
        if isinstance(entry, str) and entry.startswith(f"/schema/{group}/"):
            return SCHEMAS[group][entry[len(f"/schema/{group}/"):].split("@")[0]]
    raise ConfigError(f"{group}={option} has no schema: {path} must start from one")


def typed(cfg: DictConfig) -> DictConfig:
    """A config read from a file (a run's saved config), typed by the schemas again, so it is validated and merged
    like a composed one."""
    try:
        out = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(RunnerConfig),
                                               {k: v for k, v in cfg.items() if k not in GROUPS}))
        with open_dict(out):
            for group in GROUPS:
                out[group] = OmegaConf.merge(OmegaConf.structured(schema_of(group, cfg[group].name)), cfg[group])
    except (ValueError, KeyError, AttributeError) as err:  # OmegaConf's errors derive from these
        raise ConfigError(f"a saved config does not fit this version of runner: {str(err).splitlines()[0]}") from None
    return out


def settings(cfg: DictConfig) -> RunnerConfig:
    """The validated config as its schema's dataclass, each group an instance of its option's schema: the one place
    the config changes form. Parts are made from their group's instance; the engine reads the rest."""
    return cast(RunnerConfig, OmegaConf.to_object(cfg))


def recorded(run: RunnerConfig) -> dict:
    """The config as the run's JSON files record it (summary.json, bench.json, provenance.json)."""
    return dataclasses.asdict(run)


def flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys: {"pipeline.name": "queue", "eval_splits": ["test"], ...}."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def override_key(override: str) -> str:
    """The key an override sets, without Hydra's +, ++ or ~ (a group's name when it chooses an option):
    ``+dataset.root=/d`` -> ``dataset.root``. Every reader of typed overrides asks this one function."""
    return override.split("=", 1)[0].lstrip("+~")


def experiments_folder(searchpath: list[str] | None = None) -> Path:
    """The user's experiments folder: the ``experiments://`` entry of Hydra's search path (``searchpath``, else the
    running app's), relative to the folder the command runs in; ``experiments/`` there by default. mode=tune
    writes its winners here."""
    if searchpath is None:
        searchpath = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []
    for entry in searchpath:
        if str(entry).startswith(EXPERIMENTS_SCHEME):
            return Path(str(entry)[len(EXPERIMENTS_SCHEME):] or "experiments").absolute()
    return Path("experiments").absolute()


def task_overrides() -> list[str]:
    """The overrides of the command line this job runs (none outside a Hydra app)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def with_pipeline(cfg: DictConfig, name: str, precision: str) -> DictConfig:
    """cfg with pipeline ``name`` (the chosen pipeline keeps its overrides, the others are their YAML as Hydra
    composes it) and hardware.precision ``precision``; both were validated with cfg. A bench arm (BENCH_ARMS) is
    its pipeline as composed, with the arm's settings over it (the shuffle buffer, which is no speed setting, is
    the chosen pipeline's when it is the same pipeline)."""
    if name == cfg.pipeline.name and precision == cfg.hardware.precision:
        return cfg
    copy = cfg.copy()
    with open_dict(copy):
        if name in BENCH_ARMS:
            pipeline, settings = BENCH_ARMS[name]
            base = cfg.pipeline if cfg.pipeline.name == pipeline else compose_group("pipeline", pipeline)
            copy.pipeline = OmegaConf.merge(base, settings)
        elif name != cfg.pipeline.name:
            copy.pipeline = compose_group("pipeline", name)
        copy.hardware.precision = precision
    return copy
