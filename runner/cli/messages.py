"""What the command line says: its --help, read straight from conf/, and one line for the errors of composing
the config (Hydra's and OmegaConf's, naming the key and what is allowed) and of a launcher that could not start a
sweep's jobs."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from runner.config import packages
from runner.config.hydra import CONF_DIR, experiments_folder
from runner.config.schema import SCHEMAS, RunnerConfig
from runner.core.files import shown

HELP = """\
runner: run, compare and sweep TensorFlow input pipelines and training setups from YAML.

Usage: python -m runner [KEY=VALUE ...] [GROUP=OPTION ...]        (or: runner ..., make train ARGS="...")
       python -m runner -m KEY=V1,V2 ...                             a Hydra sweep, one job per combination
       python -m runner --cfg job                                    print the composed config
       python -m runner -m hydra/launcher=parallel ...               jobs in parallel (also: slurm, submitit_local)
       python -m runner --hydra-help                                 Hydra's own options

Examples:
  python -m runner pipeline=queue batch_size=128
  python -m runner experiment=mnist_fully_connected_feed
  python -m runner mode=eval run_dir=outputs/2026-11-25/10-00-00
  python -m runner -m pipeline=feed_dict,queue,tf_data,preloaded

Config groups (GROUP=OPTION):
{groups}
Top-level keys (conf/config.yaml):
{keys}"""


def help_text() -> str:
    """The app's help, read straight from conf/ and installed packages' option folders (Hydra's own --help composes
    every group and takes seconds)."""
    conf = Path(CONF_DIR)
    def options(folder: Path) -> list[str]:
        found = {p.stem for p in folder.glob("*.yaml")}
        if folder.name == "experiment":
            found |= {p.stem for p in experiments_folder().glob("*.yaml")}
        for package in packages.installed():  # an installed package's options, named with it
            found |= {f"{name} ({package.dist})" for name in packages.options_of(package, folder.name)}
        return sorted(found)

    # presets are chosen by the datasets
    shown_groups = [d for d in sorted(conf.iterdir()) if d.is_dir() and d.name not in ("preset", "hydra")]
    groups = "".join(f"  {d.name:<11} {', '.join(options(d))}\n" for d in shown_groups)
    lines = (conf / "config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("mode:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("hydra:"))
    keys = "".join(f"  {line}\n" for line in lines[start:end] if line.strip())
    return HELP.format(groups=groups, keys=keys)


def composition_error(err: Exception, args: list[str]) -> str | None:
    """One line for Hydra's and OmegaConf's errors about the command line ``args``: the key, and what is allowed."""
    broken = _yaml_error(err)
    if broken is not None:
        return broken

    if isinstance(err, MissingConfigException):
        text = str(err)
        found = re.search(r"Could not find '([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text, re.M)
        if found and "/" in found.group(1):
            group, option = found.group(1).rsplit("/", 1)
            listed = f"; choose one of: {', '.join(options)}" if options else ""
            return f"{group}={option} is not an option of {group}{listed}"
        return text.strip().splitlines()[0]
    if isinstance(err, OverrideParseException):
        said = str(err).strip().splitlines()[0]
        typed = said.split(": ", 1)[-1]
        if "=" in typed and not typed.startswith("-"):
            key, value = typed.split("=", 1)
            if any(ord(c) > 127 or c in " $&;|<>*?!#" for c in value):
                return (f"cannot read the override {typed}: Hydra reads an unquoted value as a plain word (letters, "
                        f"digits and / . - _ :); quote it for Hydra and the shell: '{key}=\"{value}\"'")
        return f"cannot read the override: {said}"
    cause = err.__cause__ if isinstance(err, ConfigCompositionException) else err
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and dataclasses.is_dataclass(cause.object_type):
            keys = ", ".join(f.name for f in dataclasses.fields(cause.object_type) if f.name != "name")
            group = cause.full_key.split(".")[0]
            hint = (f" (mode=eval composes this command line on the default {group}: name the run's {group} too, "
                    f"e.g. mode=eval {group}=NAME {cause.full_key}=...)" if "mode=eval" in args and "." in
                    cause.full_key else "")
            return f"{cause.full_key} is not a known key; the keys here are: {keys}{hint}"
        if isinstance(cause, ValidationError) and getattr(cause, "value", None) is not None:
            return f"{cause.full_key}={cause.value!r}: {str(cause.msg).strip().splitlines()[0]}"
        return f"{cause.full_key}: {str(cause.msg).strip().splitlines()[0]}"
    if isinstance(err, ConfigCompositionException):
        return _in_a_file(str(err)) or str(err).strip().splitlines()[0]
    if isinstance(err, OmegaConfBaseException):
        return str(err).strip().splitlines()[0]
    return None


def _yaml_error(err: BaseException | None) -> str | None:
    """A config file that is not YAML, from the error or its causes: the file, the line, the problem."""
    import yaml

    while err is not None and not isinstance(err, yaml.YAMLError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    mark = getattr(err, "problem_mark", None)
    where = f"{shown(mark.name)}: line {mark.line + 1}" if mark is not None else "a config file"
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where}: {problem}; the file is not valid YAML"


def _in_a_file(text: str) -> str | None:
    """An error Hydra met merging a config file (an experiment's key unknown or mistyped), from its text: the file,
    the key, and the keys there are."""
    where = re.search(r"^In '([^']+)': (\w+) raised while composing config", text)
    key = re.search(r"full_key: (\S+)", text)
    if not where or not key:
        return None
    group, _, option = where.group(1).rpartition("/")
    path = packages.option_file(group, option)
    file = f"conf/{group}/{option}.yaml" if path.parent.parent == packages.OWN_CONF else shown(path)
    if group == "experiment":  # runner's own, else the user's experiments folder
        file = f"experiments/{option}.yaml"
        if not path.exists():
            path = experiments_folder() / f"{option}.yaml"
            file = shown(path)
    file += _line_of(path, key.group(1))
    said = [line.strip() for line in text.splitlines()[1:] if line.strip()][0]
    owner = re.search(r"object_type=(\w+)", text)
    schema = next((c for c in _schemas() if owner and c.__name__ == owner.group(1)), None)
    if where.group(2) in ("ConfigKeyError", "ConfigAttributeError") and schema is not None:
        keys = ", ".join(f.name for f in dataclasses.fields(schema) if f.name != "name")
        return f"{file}: {key.group(1)} is not a known key; the keys here are: {keys}"
    return f"{file}: {key.group(1)}: {said}"


def _line_of(path: Path, key: str) -> str:
    """``: line N`` of the first line of ``path`` that sets the last part of ``key``, or nothing."""
    name = re.escape(key.rsplit(".", 1)[-1])
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    found = next((i for i, line in enumerate(lines) if re.match(rf"\s*{name}\s*:", line)), None)
    return "" if found is None else f": line {found + 1}"


def _schemas() -> list[type]:
    """Every schema a config file can set keys of: RunnerConfig, the sections it holds (walked, so a new section is
    never missed) and every group option's."""
    found: list[type] = []

    def walk(schema: type) -> None:
        if schema in found:
            return
        found.append(schema)
        for f in dataclasses.fields(schema):
            kind = f.type if isinstance(f.type, type) else None
            if kind is None and isinstance(f.type, str):  # postponed annotations: resolve the section's class
                kind = typing.get_type_hints(schema).get(f.name)
            if dataclasses.is_dataclass(kind):
                walk(kind)

    walk(RunnerConfig)
    return found + [schema for options in SCHEMAS.values() for schema in options.values() if schema not in found]


def launcher_error(err: Exception) -> str | None:
    """One line for a launcher that could not hand the sweep's jobs over (sbatch refusing a request, say)."""
    if not type(err).__module__.startswith(("submitit", "ray")):
        return None
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    said = "; ".join(lines[-2:]) or type(err).__name__
    return f"the launcher could not start the sweep's jobs: {said}. Check hydra.launcher.* (--cfg hydra shows them)"
