"""Parts from installed packages: the entry-point group ``runner.parts``.

A package declares one entry point in the group, naming a :class:`Package`::

    [project.entry-points."runner.parts"]
    my_parts = "my_parts:PARTS"

    # my_parts/__init__.py: light, no TensorFlow (it is read while a config is composed)
    PARTS = Package(conf=Path(__file__).parent / "conf",             # conf/model/keras_mlp.yaml, ...
                    schemas={"model": {"keras_mlp": KerasMlpConfig}},  # as runner.config.schema's SCHEMAS
                    modules=("my_parts.models",))                     # they register with runner's registries

While a config is composed, every installed package's schemas join runner's (``SCHEMAS``, so its options are
validated like runner's own), its ``conf`` folder joins Hydra's search path (hydra_plugins.runner_parts) and its
options are listed by ``--help``; YAML names its parts by their registry names, as runner's own. When a run builds
its parts, each package's ``modules`` are imported, and they register their parts (``@MODELS.register("keras_mlp")``).

A package that fails to import, declares something else than a Package, or names an option runner or another package
already has is one line (:func:`problems`), and its parts are left out.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from runner.config.schema import SCHEMAS, TRAINERS
from runner.core.errors import ConfigError

GROUP = "runner.parts"  # the entry-point group
OWN = "runner"  # the owner of runner's own options
OWN_CONF = Path(__file__).resolve().parent.parent / "conf"  # runner's own options (runner/conf: package data)


@dataclass(frozen=True)
class Package:
    """What an installed package adds: option YAMLs, their schemas, and the modules that register the parts."""

    conf: str | Path | None = None  # a folder of GROUP/OPTION.yaml files, each starting from its schema as runner's
    # own do; None: no options (a package of trainers)
    schemas: dict[str, dict[str, type]] = field(default_factory=dict)  # group -> option name -> schema dataclass
    modules: tuple[str, ...] = ()  # imported when a run builds its parts: they register with runner's registries
    trainers: tuple[str, ...] = ()  # trainer names its modules register (trainer=NAME)


@dataclass(frozen=True)
class Installed:
    """A package found through its entry point."""

    dist: str  # the distribution's name and version, as pip shows them
    entry: str  # the entry point as declared: NAME = VALUE
    package: Package

    @property
    def conf(self) -> Path | None:
        return None if self.package.conf is None else Path(self.package.conf).resolve()

    @property
    def where(self) -> str:
        return _where(self.dist, self.entry)


def _where(dist: str, entry: str) -> str:
    """How a line names a package: ``the package NAME VERSION (entry point runner.parts: NAME = VALUE)``."""
    return f"the package {dist} (entry point {GROUP}: {entry})"


@dataclass(frozen=True)
class Found:
    packages: tuple[Installed, ...]
    problems: tuple[str, ...]  # one line each: a package left out, and why


def _dist(entry: EntryPoint) -> str:
    dist = entry.dist
    return f"{dist.name} {dist.version}" if dist is not None else "(a package without metadata)"


def _uninstall(entry: EntryPoint) -> str:
    return f"pip uninstall {entry.dist.name}" if entry.dist is not None else "remove it from the path"


def _options(conf: Path | None, group: str) -> set[str]:
    return set() if conf is None else {p.stem for p in (conf / group).glob("*.yaml")}


def _clash(kind: str, name: str, owner: str, dist: str, entry: EntryPoint) -> str:
    other = "runner itself" if owner == OWN else f"the package {owner}"
    return (f"{kind} '{name}' is registered by two packages: {other} and {dist}; uninstall one of them "
            f"({_uninstall(entry) if owner == OWN else f'{_uninstall(entry)}, or the other'}) or rename the part")


@functools.cache  # once per process: SCHEMAS grows by each package's schemas
def found() -> Found:
    """The installed packages of the ``runner.parts`` entry-point group, their schemas added to ``SCHEMAS``."""
    owners: dict[tuple[str, str], str] = {(g, n): OWN for g in SCHEMAS for n in SCHEMAS[g]}
    owners |= {(g, n): OWN for g in SCHEMAS for n in _options(OWN_CONF, g)}
    owners |= {("trainer", n): OWN for n in TRAINERS}
    packages: list[Installed] = []
    problems: list[str] = []
    for entry in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        dist, declared = _dist(entry), f"{entry.name} = {entry.value}"
        try:
            package = entry.load()
        except Exception as err:  # noqa: BLE001  any error of the package's code is the package's
            problems.append(f"{_where(dist, declared)} fails to import: {_first_line(err)}; fix it or uninstall it "
                            f"({_uninstall(entry)})")
            continue
        if not isinstance(package, Package):
            problems.append(f"{_where(dist, declared)} names a {type(package).__name__}, not a "
                            f"runner.config.packages.Package; point the entry point at one")
            continue
        joined = Installed(dist, declared, package)
        problem = _check(joined, entry, owners)
        if problem:
            problems.append(problem)
            continue
        for group, options in package.schemas.items():
            SCHEMAS[group].update(options)
        owners |= {(g, n): dist for g, options in package.schemas.items() for n in options}
        owners |= {(g, n): dist for g in SCHEMAS for n in _options(joined.conf, g)}
        owners |= {("trainer", n): dist for n in package.trainers}
        packages.append(joined)
    return Found(tuple(packages), tuple(problems))


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def _check(joined: Installed, entry: EntryPoint, owners: dict[tuple[str, str], str]) -> str | None:
    """Why the package cannot join (one line), or None."""
    where, package, conf = joined.where, joined.package, joined.conf
    if conf is not None and not conf.is_dir():
        return f"{where}: its conf folder {conf} does not exist; ship it with the package (package data)"
    for group, options in package.schemas.items():
        if group not in SCHEMAS or group == "hardware":
            known = ", ".join(g for g in SCHEMAS if g != "hardware")
            return f"{where} gives schemas for '{group}', which is no group of parts; the groups are: {known}"
        for name, schema in options.items():
            if not dataclasses.is_dataclass(schema):
                return f"{where}: the schema of {group} '{name}' is not a dataclass"
    declared_names = [(g, n) for g, options in package.schemas.items() for n in options]
    declared_names += [(g, n) for g in SCHEMAS for n in sorted(_options(conf, g))]
    declared_names += [("trainer", n) for n in package.trainers]
    for group, name in dict.fromkeys(declared_names):
        owner = owners.get((group, name))
        if owner is not None:
            return _clash(group, name, owner, joined.dist, entry)
    return None


def installed() -> tuple[Installed, ...]:
    """The packages whose parts join runner's (those without a problem)."""
    return found().packages


def problems() -> tuple[str, ...]:
    return found().problems


def check() -> None:
    """Refuses to go on while an installed package is broken: the first problem, as one line."""
    if problems():
        raise ConfigError(problems()[0])


def options_of(package: Installed, group: str) -> list[str]:
    """The options a package's conf folder gives a group."""
    return sorted(_options(package.conf, group))


def conf_dirs() -> list[Path]:
    """The packages' option folders, after runner's own on Hydra's search path."""
    return [p.conf for p in installed() if p.conf is not None]


def option_file(group: str, option: str) -> Path:
    """The YAML of a group's option: runner's own, else an installed package's (runner's path if neither has it)."""
    for conf in (OWN_CONF, *conf_dirs()):
        if (conf / group / f"{option}.yaml").is_file():
            return conf / group / f"{option}.yaml"
    return OWN_CONF / group / f"{option}.yaml"


def trainer_names() -> tuple[str, ...]:
    return (*TRAINERS, *(n for p in installed() for n in p.package.trainers))


def owner(group: str, name: str) -> str | None:
    """The package an option comes from (None: runner's own)."""
    return next((p.dist for p in installed() if name in _options(p.conf, group)
                 or name in p.package.schemas.get(group, {})), None)


@functools.cache  # once per process
def import_parts() -> None:
    """Imports each package's modules, so that they register their parts with runner's registries."""
    check()
    for package in installed():
        for module in package.package.modules:
            try:
                importlib.import_module(module)
            except Exception as err:  # noqa: BLE001  any error of the package's code is the package's
                raise ConfigError(f"{package.where}: its module {module} fails to import: "
                                  f"{_first_line(err)}") from None
