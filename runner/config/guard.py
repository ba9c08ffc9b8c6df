"""What a command line and an experiment may make Hydra do: name runner's parts and settings, never code.

Before Hydra acts on anything, runner composes the config Hydra will act on with Hydra's own loader (every defaults
list, search path, experiment and override applied, and each option a sweep chooses from) and holds it against an
allow-list:

- no ``_target_`` anywhere (at any depth, in lists too) but those of runner's two callbacks and of the launcher and
  sweeper configs shipped with runner and its plug-ins, each equal to the shipped value;
- under ``hydra`` only ``run.dir``, ``sweep.dir``, ``sweep.subdir``, ``job.chdir``, ``verbose``, ``mode``, the
  sweeper's ``params``, the typed fields of the chosen launcher and sweeper (shell lines such as submitit's
  ``setup`` from the command line only), ``searchpath`` entries ``pkg://`` and ``experiments://`` (a folder of
  experiment files), and
  ``job.env_set``/``job.env_copy`` of TensorFlow's and the devices' variables: not ``hydra.job_logging`` or
  ``hydra.hydra_logging`` (logging's dictConfig imports any class and opens any file), nor anything else;
- no group option named by a path, no ``--config-dir``/``--config-path``/``--config-name``, and never
  ``--experimental-rerun`` (it unpickles a file).

Each refusal is one line naming the key and where it was set (the command line or the file). ``RUNNER_ALLOW_TARGETS=1``
in the environment is the one switch for users who want their own Hydra callbacks, logging or search paths (a config
cannot set it).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.config.hydra import CONF_DIR, EXPERIMENTS_SCHEME, register_schemas
from runner.config.schema import GROUPS
from runner.core.errors import ConfigError
from runner.core.files import shown

ALLOW = "RUNNER_ALLOW_TARGETS"
# Keys under hydra. a config may change (a key and everything under it).
HYDRA_KEYS = ("run.dir", "sweep.dir", "sweep.subdir", "job.chdir", "verbose", "mode", "sweeper.params")
# Filled in by Hydra as it composes, from the command line: not settings.
COMPUTED = ("overrides", "runtime", "job.override_dirname", "job.config_name", "job.id", "job.num")
# Typed fields of the shipped launchers that hold shell lines: the user's own command line may set them.
SHELL_LINES = ("launcher.setup", "launcher.srun_args", "launcher.additional_parameters")
# Typed fields that import code: never.
IMPORTS = ("sweeper.custom_search_space",)
# The environment variables a job may be given: TensorFlow's (not the ones naming a library to load) and the devices'.
ENV = re.compile(r"(?!\w*(LIBRARY|PLUGIN))TF_\w+|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|OMP_NUM_THREADS|XLA_FLAGS")
COMMAND_LINE = "the command line"
SEARCH_SYNTAX = ("interval(0.001, 0.1), tag(log, interval(0.001, 0.1)), int(interval(16, 256)), choice(50, 100), "
                 "range(1, 10)")  # hydra.sweeper.params of hydra/sweeper=optuna
ALLOW_HINT = f"; to allow it, set {ALLOW}=1 in the environment"


@dataclass
class Composed:
    """One config Hydra would act on, and the overrides it was composed from (where its keys were set)."""

    cfg: DictConfig
    overrides: list[str]


def allowed() -> bool:
    return os.environ.get(ALLOW) == "1"


def check(argv: list[str]) -> Guard | None:
    """Refuses, in one line naming the key and where it was set, a command line that would make Hydra import or run
    code, write outside the run, or read configs from outside runner's folders. The guard that composed it (None
    when the switch is set), whose Hydra can show the config it checked."""
    args = _arguments(argv)
    if args.experimental_rerun is not None:
        raise ConfigError("--experimental-rerun: it unpickles a file, which can run any code; rerun a job with "
                          "its overrides instead (JOB_DIR/.hydra/overrides.yaml)")
    if allowed():
        return None
    for flag, value in (("--config-dir", args.config_dir), ("--config-path", args.config_path),
                        ("--config-name", args.config_name)):
        if value is not None:
            raise ConfigError(f"{flag} {value}: runner reads its configs from its own folders and experiments/ "
                              f"(experiment=NAME){ALLOW_HINT}")
    guard = Guard(args)
    guard.check()
    return guard


def only_shows_config(argv: list[str]) -> bool:
    """Whether the command only shows the config (``--cfg job|hydra|all``)."""
    a = _arguments(argv)
    return a.cfg is not None and not (a.run or a.multirun or a.info or a.shell_completion or a.hydra_help)


def _arguments(argv: list[str]) -> argparse.Namespace:
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(argv)


class Guard:
    """Composes a command line's configs with Hydra's loader (the run's, and one per option a sweep chooses from)
    and checks each against the allow-list."""

    def __init__(self, args: argparse.Namespace):
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.utils import create_config_search_path
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        register_schemas()
        GlobalHydra.instance().clear()
        self.hydra = _hydra_class()("runner", ConfigLoaderImpl(create_config_search_path(CONF_DIR)))
        GlobalHydra.instance().initialize(self.hydra)
        self.parser = OverridesParser.create()
        self.args = args
        self.overrides = list(args.overrides)
        self.multirun = args.multirun
        self._references: dict[tuple, dict] = {}
        self.mode: Any = None  # the composed config's hydra.mode, as Hydra's get_mode would compose it again

    def check(self) -> None:
        from hydra.core.global_hydra import GlobalHydra

        try:
            parsed = self.parser.parse_overrides(self.overrides)
            _check_choices(parsed, self.hydra.config_loader.repository.group_exists)
            run = self.compose(self.overrides, sweep=self.multirun, keep=True)
            self.mode = run.cfg.hydra.mode
            self.check_config(run)
            sweeps = [o for o in parsed if o.is_sweep_override()] if self._multirun(run) else []
            for override in sweeps + self._sweeper_params(run):
                self._check_sweep(override, [str(o.input_line) for o in parsed if not o.is_sweep_override()])
        finally:
            GlobalHydra.instance().clear()  # Hydra's app starts its own

    @contextlib.contextmanager
    def answering_get_mode(self) -> Iterator[None]:
        """Hydra's app composes the config once more only to read ``hydra.mode`` (Hydra.get_mode) before it composes
        the run's: the guard's composition of the same command line answers it (a quarter of a command's start)."""
        from hydra._internal.hydra import Hydra

        real, mode = Hydra.get_mode, self.mode
        Hydra.get_mode = lambda hydra, config_name, overrides: mode  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            Hydra.get_mode = real  # type: ignore[method-assign]

    def show_cfg(self) -> None:
        """``--cfg``: Hydra shows the config the guard checked (composed once)."""
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().initialize(self.hydra)
        try:
            self.hydra.show_cfg("config", self.overrides, cfg_type=self.args.cfg, package=self.args.package,
                                resolve=self.args.resolve)
        finally:
            GlobalHydra.instance().clear()

    def compose(self, overrides: list[str], sweep: bool = False, keep: bool = False) -> Composed:
        """The config Hydra acts on: a run's (composed as Hydra runs it, and kept for --cfg), or a sweep's (as
        Hydra composes a sweep before its jobs); a run whose config asks for a sweep (hydra.mode) as a sweep's."""
        from hydra.errors import ConfigCompositionException
        from hydra.types import RunMode

        if not sweep:
            try:
                return Composed(self.hydra.compose_config("config", overrides, run_mode=RunMode.RUN, keep=keep),
                                overrides)
            except ConfigCompositionException:
                cfg = self.hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN,
                                                validate_sweep_overrides=False)
                if cfg.hydra.mode != RunMode.MULTIRUN:
                    raise
                return Composed(cfg, overrides)
        cfg = self.hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False)
        return Composed(cfg, overrides)

    def _multirun(self, run: Composed) -> bool:
        from hydra.types import RunMode

        return self.multirun or run.cfg.hydra.mode == RunMode.MULTIRUN

    def _sweeper_params(self, run: Composed) -> list:
        """The sweeper's params (an experiment's ``hydra.sweeper.params``) as overrides."""
        params = OmegaConf.select(run.cfg, "hydra.sweeper.params")
        if not params:
            return []
        found = []
        for key, value in params.items():
            if str(key).lstrip("+~").startswith(("hydra.", "hydra/")) or "_target_" in str(key).split("."):
                self.refuse(run, ("hydra", "sweeper", "params", str(key)),
                            "a sweep chooses runner's settings, not Hydra's or code")
            try:
                found += self.parser.parse_overrides([f"{key}={value}"])
            except Exception as err:  # noqa: BLE001  Hydra's parser says where
                raise ConfigError(f"{self.origin(run, ('hydra', 'sweeper', 'params', str(key)))}: "
                                  f"hydra.sweeper.params: {key}: {value} does not parse "
                                  f"({str(err).splitlines()[0][:160]}); write each parameter as one of "
                                  f"{SEARCH_SYNTAX}") from None
        _check_choices(found, self.hydra.config_loader.repository.group_exists)
        return found

    def _check_sweep(self, override, base: list[str]) -> None:
        """Each value a sweep takes: a group's option composed as its job will be (runner's own groups' options are
        files of conf/, checked by the tests), a value searched for code."""
        key = override.key_or_group
        if override.is_interval_sweep():
            return  # numbers
        group = self.hydra.config_loader.repository.group_exists(key)
        values = _sweep_values(override, self.hydra.config_loader.get_group_options(key) if group else [])
        for value in values:
            if group and key not in GROUPS:
                self.check_config(self.compose([*base, f"{key}={value}"]))
            elif _has_target(value):
                raise ConfigError(f"{COMMAND_LINE}: {key}: a sweep value names code to import "
                                  f"(_target_); a config names runner's parts, never code{ALLOW_HINT}")

    def check_config(self, run: Composed) -> None:
        """The allow-list, held against one composed config."""
        cfg = run.cfg
        _check_choices_of(cfg)
        reference = self._reference(cfg)
        now = cast(dict, OmegaConf.to_container(cfg, resolve=False))
        for path, value in _targets(now):
            if _at(reference, path) != value:
                self.refuse(run, path, f"names code to import ({value}); a config names runner's parts, never code")
        for path in _changes(now["hydra"], reference["hydra"], ("hydra",)):
            self._check_hydra_key(run, path, _at(now, path))

    def _check_hydra_key(self, run: Composed, path: tuple, value: Any) -> None:
        key = ".".join(map(str, path[1:]))
        if _under(key, COMPUTED + HYDRA_KEYS):
            return
        if _under(key, ("job_logging", "hydra_logging")):
            self.refuse(run, path, "changes Hydra's logging, which can import any class and write any file; "
                                   "runner's logging follows its own keys (verbose)")
        if _under(key, ("job.env_set", "job.env_copy")):
            names = [path[3]] if key.startswith("job.env_set.") else list(value or [])
            for name in names:
                if not ENV.fullmatch(str(name)):
                    self.refuse(run, path, f"sets the environment variable {name} for the job; only TF_*, "
                                           f"CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, OMP_NUM_THREADS and XLA_FLAGS")
            return
        if key.startswith("searchpath"):
            for entry in value if isinstance(value, list) else [value]:
                if not _trusted_searchpath(str(entry)):
                    self.refuse(run, path, f"adds {entry} to the config search path; only pkg://... and "
                                           f"{EXPERIMENTS_SCHEME}FOLDER (a folder of experiment files)")
            return
        if _under(key, IMPORTS):
            self.refuse(run, path, "names a function to import and call")
        if _under(key, ("launcher", "sweeper")) and _at(self._reference(run.cfg)["hydra"], path[1:]) is not _MISSING:
            if _under(key, SHELL_LINES) and self.origin(run, path) != COMMAND_LINE:
                self.refuse(run, path, "holds shell lines, which only your own command line may set")
            return  # a typed field of the shipped launcher or sweeper
        self.refuse(run, path, "is not a setting runner lets a config change (under hydra: run.dir, sweep.dir, "
                               "sweep.subdir, job.chdir, verbose, the sweeper's params, and the launcher's and "
                               "sweeper's own fields)")

    def _reference(self, cfg: DictConfig) -> dict:
        """The hydra node as shipped for the same Hydra options (launcher, sweeper, sampler, logging): Hydra's and
        the plug-ins' configs, and conf/config.yaml's hydra section over them."""
        from hydra.types import RunMode

        choices = tuple(sorted((k, v) for k, v in cfg.hydra.runtime.choices.items()
                               if k.startswith("hydra/") and v is not None))
        if choices not in self._references:
            shipped = self.hydra.compose_config(None, [f"{k}={v}" for k, v in choices], run_mode=RunMode.RUN)
            own = OmegaConf.load(Path(CONF_DIR) / "config.yaml")
            with_own = OmegaConf.merge(OmegaConf.to_container(shipped, resolve=False), {"hydra": own.hydra})
            self._references[choices] = cast(dict, OmegaConf.to_container(with_own, resolve=False))
        return self._references[choices]

    def refuse(self, run: Composed, path: tuple, reason: str) -> None:
        key = ".".join(map(str, path))
        raise ConfigError(f"{self.origin(run, path)}: {key}: {reason}{ALLOW_HINT}")

    def origin(self, run: Composed, path: tuple) -> str:
        """Where the value at ``path`` was set: the command line, or the last config file of the defaults list that
        sets it."""
        for override in reversed(self.parser.parse_overrides(run.overrides)):
            if self.hydra.config_loader.repository.group_exists(override.key_or_group):
                continue
            key = tuple(override.key_or_group.split("."))
            if path[:len(key)] == key:
                return COMMAND_LINE
        for source, package, config in reversed(list(self._configs(run))):
            prefix = tuple(package.split(".")) if package else ()
            if path[:len(prefix)] == prefix and _at(config, path[len(prefix):]) is not _MISSING:
                return source
        return COMMAND_LINE

    def _configs(self, run: Composed) -> Iterator[tuple[str, str, dict]]:
        """Each config file of a composition's defaults list: where it is, its package, its content."""
        from hydra._internal.defaults_list import create_defaults_list

        loader = self.hydra.config_loader
        parsed, repo = loader._parse_overrides_and_create_caching_repo("config", run.overrides)
        defaults = create_defaults_list(repo=repo, config_name="config", overrides_list=parsed, prepend_hydra=True,
                                        skip_missing=True)
        for default in defaults.defaults:
            if default.config_path is None:
                continue
            loaded = repo.load_config(default.config_path)
            if loaded is None:
                continue
            where = loaded.path.replace("file://", "", 1)
            # The file as the user knows it: experiments/NAME.yaml, not the conf/experiment link to that folder.
            if loaded.path.startswith("file://"):
                source = str((Path(where) / f"{default.config_path}.yaml").resolve())
            elif loaded.path.startswith("experiments:"):  # a folder of experiment files: experiment/NAME is NAME.yaml
                source = str(Path(where.split(":", 1)[1]) / f"{default.config_path.split('/', 1)[-1]}.yaml")
            else:
                source = where
            yield shown(source), default.package or "", cast(dict, OmegaConf.to_container(loaded.config, resolve=False))


@functools.cache
def _hydra_class() -> type:
    """Hydra, keeping the guard's composition of a run for the ``--cfg`` that shows it."""
    from hydra._internal.hydra import Hydra

    class Composing(Hydra):
        def compose_config(self, config_name, overrides, run_mode, keep: bool = False, **kwargs):  # type: ignore[override]
            key = (config_name, tuple(overrides), run_mode)
            kept = self.__dict__.setdefault("kept", {})
            if key in kept and not keep:
                return kept.pop(key)
            cfg = super().compose_config(config_name, overrides, run_mode, **kwargs)
            if keep:
                kept[key] = cfg  # shown after it was checked
            return cfg

    return Composing


_MISSING = object()


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return _MISSING
    return node


def _targets(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every ``_target_`` in a container, at any depth (lists too): its key path and value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield (*path, key), value
            else:
                yield from _targets(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, (*path, i))


def _has_target(value: Any) -> bool:
    plain = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    return any(True for _ in _targets(plain))


def _changes(now: Any, was: Any, path: tuple) -> Iterator[tuple]:
    """The key paths where ``now`` differs from ``was``: a changed leaf, or a node one of them lacks."""
    if isinstance(now, dict) and isinstance(was, dict):
        for key in now:
            if key not in was:
                yield (*path, key)
            else:
                yield from _changes(now[key], was[key], (*path, key))
        yield from ((*path, key) for key in was if key not in now)
    elif now != was:
        yield path


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _sweep_values(override, options: list[str]) -> list:
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        return value.filter(options)
    return list(override.sweep_iterator()) if override.is_sweep_override() else [value]


def _plain_name(value: Any) -> bool:
    return not (isinstance(value, str) and (value.startswith("/") or ".." in value.split("/")))


def _check_choices(parsed: list, is_group) -> None:
    """A group option on the command line is a name, never a path (``preset=../../elsewhere/x``)."""
    from hydra.core.override_parser.types import Glob

    for override in parsed:
        if not is_group(override.key_or_group):
            continue
        value = override.value()
        if isinstance(value, Glob):
            values = [*value.include, *value.exclude]
        elif override.is_sweep_override() and not override.is_interval_sweep():
            values = list(override.sweep_iterator())
        else:
            values = [value]
        for v in values:
            if not _plain_name(v):
                raise ConfigError(f"{COMMAND_LINE}: {override.key_or_group}={v}: an option is a file of its group's "
                                  f"folder, named without a path ({override.key_or_group}=NAME)")


def _check_choices_of(cfg: DictConfig) -> None:
    for group, option in cfg.hydra.runtime.choices.items():
        if not _plain_name(option):
            raise ConfigError(f"{group}={option}: an option is a file of its group's folder, named without a path "
                              f"({group}=NAME)")


def _trusted_searchpath(entry: str) -> bool:
    """A package's configs, or a folder whose files can only be experiments (checked like runner's own)."""
    return entry.startswith(("pkg://", EXPERIMENTS_SCHEME))
