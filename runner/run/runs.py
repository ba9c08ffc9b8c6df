"""A run of a config on the engine: its parts built, its start recorded, the training or evaluation loop run, and a
read error turned into one line naming the damaged file and what to do."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from runner.config.hydra import override_key, recorded, settings, task_overrides
from runner.core.errors import ConfigError, DataChanged, DataError, RunnerError, TrainingError
from runner.datasets.base import Dataset
from runner.engine.evaluation import evaluate
from runner.engine.hardware import Placement
from runner.engine.replicas import Replicas
from runner.engine.session import IN_PROCESS, SessionTarget
from runner.engine.training import train
from runner.run import rundir
from runner.run.build import build_parts, describe


@contextlib.contextmanager
def naming_damaged_records(dataset: Dataset) -> Iterator[None]:
    """An error while reading records: find the damaged file (and record) and say what to do."""
    try:
        yield
    except RunnerError as err:  # a read error, or an op that refused a record (a label out of range, a bad image)
        if isinstance(err, (ConfigError, TrainingError, DataChanged)):
            raise
        damage = dataset.damaged_records()
        if not damage:
            raise
        if not damage.cache:
            raise DataError(f"{damage.where}: {damage.problem}; fix or remove it") from None
        dataset_args = " ".join(o for o in task_overrides() if override_key(o).startswith("dataset"))
        raise DataError(f"{damage.where}: {damage.problem}. Rebuild the records with: python -m runner mode=convert "
                        f"{dataset_args}".rstrip() + f" (or delete {Path(damage.where).parent})") from None


def train_run(cfg: DictConfig, run_dir: str, dataset: Dataset, changed: dict | None, replicas: Replicas | None = None,
              target: SessionTarget = IN_PROCESS, placed: Placement | None = None) -> dict | None:
    """Trains cfg on the prepared dataset in run_dir; ``changed`` (from runner.run.rundir.check_resume) is None in a
    cluster task that does not own the run dir, which records nothing. A cluster worker gives its ``replicas``, the
    ``target`` of its server and the placement that server runs."""
    parts = build_parts(cfg, dataset, replicas, placed)
    describe(cfg, parts, run_dir)
    if changed is not None:
        rundir.record_start(run_dir, cfg, dataset.class_names, changed, parts.devices)
    with naming_damaged_records(dataset):
        run = settings(cfg)
        return train(parts, run, run_dir, recorded(run), target)


def eval_run(cfg: DictConfig, run_dir: str, dataset: Dataset, once: bool, until_step: int | None = None
             ) -> dict | None:
    """Evaluates run_dir's latest checkpoint (``once``) or each new one, on the prepared dataset."""
    parts = build_parts(cfg, dataset)
    describe(cfg, parts, run_dir)
    decay = cfg.get("moving_average_decay") if cfg.eval_moving_average else None
    with naming_damaged_records(dataset):
        return evaluate(parts, run_dir, cfg.batch_size, list(cfg.eval_splits), moving_average_decay=decay,
                        once=once, interval_secs=cfg.eval_interval_secs, until_step=until_step)
