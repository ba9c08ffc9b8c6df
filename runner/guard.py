"""What a command line and an experiment may ask Hydra for. runner's configs name registry entries, never import
paths: the only ``_target_``s are runner's own two callbacks (conf/config.yaml) and the launcher and sweeper plugins
chosen by name (``hydra/launcher=slurm``, ``hydra/sweeper=optuna``). A ``_target_`` or a Hydra callback given on the
command line or in an experiment would make Hydra import and call any code, so it is refused before Hydra reads the
config, naming the key; an experiment is a file of experiments/, named without a path. ``RUNNER_ALLOW_TARGETS=1`` in
the environment lets a user who wants their own Hydra callbacks have them (a config cannot set it)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from runner.config.hydra import CONF_DIR
from runner.errors import ConfigError

ALLOW = "RUNNER_ALLOW_TARGETS"
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _imports_code(key: str) -> bool:
    """Whether setting ``key`` (an override's key, or a key path inside an experiment) makes Hydra import a name."""
    parts = key.split(".")
    return "_target_" in parts or parts[:2] == ["hydra", "callbacks"] or key == "hydra/callbacks"


def targets(node, prefix: str) -> list[str]:
    """The key paths in a YAML document that would make Hydra import a name."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            found += [path] if _imports_code(path) else targets(value, path + ".")
    elif isinstance(node, list):
        for value in node:
            found += targets(value, prefix)
    return found


def check_command_line(args: list[str]) -> None:
    """Refuses, naming the key, an override or an experiment file that would make Hydra import a name, and an
    experiment named by a path."""
    allowed = os.environ.get(ALLOW) == "1"
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if _imports_code(key) and not allowed:
            raise ConfigError(f"{key}: a config names runner's parts, never code to import; to run Hydra callbacks "
                              f"of your own set {ALLOW}=1 in the environment")
        if key == "experiment":
            for name in value.split(","):  # a sweep over experiments: each is checked
                _check_experiment(name.strip(), allowed)


def _check_experiment(name: str, allowed: bool) -> None:
    if name in ("", "null"):
        return
    if not EXPERIMENT_NAME.fullmatch(name):
        raise ConfigError(f"experiment={name}: an experiment is a file of experiments/, named without a path "
                          f"(experiment=NAME for experiments/NAME.yaml)")
    path = Path(CONF_DIR) / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return  # said by Hydra, listing the experiments there are
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path.resolve()}{line}: {problem}; the file is not valid YAML") from None
    keys = targets(document, "")
    if keys and not allowed:
        raise ConfigError(f"{path.resolve()}: {keys[0]}: an experiment holds overrides of runner's settings, never code to "
                          f"import; to run Hydra callbacks of your own set {ALLOW}=1 in the environment")
