"""A run dir across reruns: its saved config (never overwritten), what a rerun may change, its history, its lock.

A run dir is self-contained: checkpoints are found by name inside it, so it resumes and evaluates after mv, cp or
rsync. Its first training run's config stays in ``.hydra/config.yaml``; a rerun that resumes it writes its own
config to ``.hydra/resumes/N/`` and a line to ``history.jsonl``. A rerun may change only what does not alter the
model, its variables or the data's meaning (the schema's keys tagged RESUME); anything else is refused, naming the keys,
unless ``force_resume=true``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config.fields import EVAL, RESUME
from runner.config.hydra import flat, override_key, recorded, settings, typed
from runner.config.schema import GROUPS, keys_tagged
from runner.core.errors import ConfigError, RunDirInUse
from runner.core.files import write_json
from runner.run import provenance

SAVED_CONFIG = Path(".hydra") / "config.yaml"


def has_checkpoints(run_dir: str | Path) -> bool:
    return any((Path(run_dir) / "checkpoints").glob("*.index"))


def _container(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001  an interpolation of another machine (an env var, a resolver) stays as written
        return OmegaConf.to_container(cfg, resolve=False)


def saved_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / SAVED_CONFIG
    if not path.exists():
        raise ConfigError(f"{path} not found: run_dir={run_dir} is not a training run dir of runner")
    return OmegaConf.load(path)


def changes(saved: DictConfig, new: DictConfig) -> dict[str, list]:
    """{key: [saved value, new value]} for every leaf that differs."""
    old, cur = flat(_container(saved)), flat(_container(new))
    return {k: [old.get(k), cur.get(k)] for k in sorted(set(old) | set(cur)) if old.get(k) != cur.get(k)}


def _within(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def unsafe_changes(run_dir: str | Path, cfg: DictConfig) -> dict[str, list]:
    """The changes from the run's saved config that alter the model, its variables or the data."""
    return _unsafe(changes(saved_config(run_dir), cfg))


def _unsafe(changed: dict[str, list]) -> dict[str, list]:
    return {k: v for k, v in changed.items() if not _within(k, keys_tagged(RESUME))}


def check_resume(run_dir: str | Path, cfg: DictConfig) -> dict[str, list]:
    """For a rerun in a trained run dir: the changes from its saved config. Raises ConfigError, naming the keys,
    when a change would alter the model, its variables or the data, unless ``force_resume``."""
    if not has_checkpoints(run_dir) or not (Path(run_dir) / SAVED_CONFIG).exists():
        return {}
    changed = changes(saved_config(run_dir), cfg)
    unsafe = _unsafe(changed)
    if unsafe and not cfg.force_resume:
        listed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(unsafe.items())[:6])
        more = f" and {len(unsafe) - 6} more" if len(unsafe) > 6 else ""
        raise ConfigError(f"run_dir={run_dir} holds a run trained with another config ({listed}{more}); resuming "
                          f"would mix two runs. Use a new run_dir, or force_resume=true to continue it anyway.")
    return changed


def eval_config(run_dir: str | Path, cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """mode=eval: the run's saved config, typed by the schemas again, with this command line's choices among
    the keys tagged EVAL taken from ``cfg`` (composed by Hydra from that command line: ``pipeline=tf_data`` brings
    the option's YAML). Other keys given on the command line that differ from the run's are refused, naming them.
    A key the saved config lacks (a run of an older runner) is taken from ``cfg`` where its group's option is the
    run's."""
    saved = typed(saved_config(run_dir))
    # Naming the run's own dataset (or model, ...) again only lets its keys be given (dataset=image_folder
    # dataset.root=NEW): it changes nothing by itself.
    keys = {o: override_key(o) for o in overrides}
    renamed = {k for o, k in keys.items() if k in GROUPS and o.split("=", 1)[-1] == saved[k].name}
    given = [k for k in keys.values() if k not in renamed]
    refused = {k: v for k, v in changes(saved, cfg).items()
               if any(_within(k, (g,)) or _within(g, (k,)) for g in given) and not _within(k, ("mode", "run_dir"))
               and not _within(k, keys_tagged(EVAL))}
    if refused:
        listed = ", ".join(f"{k}={v[1]!r} (the run has {v[0]!r})" for k, v in refused.items())
        raise ConfigError(f"mode=eval evaluates the run with its own config; it can't take {listed}. It may "
                          f"change: {', '.join(keys_tagged(EVAL))}")
    chosen = [key for key in given if _within(key, keys_tagged(EVAL))]
    with open_dict(saved):
        saved.mode, saved.run_dir = "eval", str(run_dir)
        for key in chosen:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False, force_add=True)
        for key in OmegaConf.missing_keys(saved):
            group = key.split(".")[0]
            runs_option = "." not in key or OmegaConf.select(cfg, f"{group}.name") == saved[group].name
            if runs_option and OmegaConf.select(cfg, key, default=None) is not None:
                OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    return saved


def record(run_dir: str | Path, **entry) -> None:
    """Appends a line to the run's history.jsonl."""
    with open(Path(run_dir) / "history.jsonl", "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}) + "\n")


def in_use(run_dir: str | Path) -> bool:
    """Whether another process holds the run dir's lock (is training in it)."""
    try:
        with open(Path(run_dir) / ".lock") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@contextlib.contextmanager
def lock(run_dir: str | Path) -> Iterator[None]:
    """Holds the run dir for one training run at a time; a second run in it fails at once, naming the first."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    handle = open(Path(run_dir) / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirInUse(f"run_dir={run_dir} is in use by another run (pid {holder}); wait for it to end or "
                              f"choose another run_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def record_start(run_dir: str | Path, cfg: DictConfig, class_names: list[str], changed: dict, devices: list[str],
                 overrides: tuple[str, ...]) -> None:
    """A training run's start in its run dir: a new run's provenance and labels (labels.json: label id -> class
    name; a rerun's stay), and a line in history.jsonl."""
    resuming = has_checkpoints(run_dir)
    if not resuming:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(run_dir) / "labels.json", dict(enumerate(class_names)))
        provenance.write(run_dir, config=recorded(settings(cfg)), overrides=list(overrides),
                         devices=devices, seed=cfg.seed)
    record(run_dir, event="resume" if resuming else "start", overrides=list(overrides), changed=changed,
           forced=bool(cfg.force_resume and changed))
