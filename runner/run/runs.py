"""A run of a config on the engine: its parts built, its start recorded, the training or evaluation loop run, and a
read error turned into one line naming the damaged file and what to do."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from runner.config.hydra import override_key, recorded, settings
from runner.core.errors import ConfigError, DataChanged, DataError, RunnerError, TrainingError
from runner.datasets.base import Dataset
from runner.engine.evaluation import evaluate
from runner.engine.topology import Topology
from runner.engine.training import TrainSettings, train
from runner.run import rundir
from runner.run.build import build_parts, describe, placement
from runner.run.invocation import ALONE, Invocation


@contextlib.contextmanager
def naming_damaged_records(dataset: Dataset, overrides: tuple[str, ...] = ()) -> Iterator[None]:
    """An error while reading records: find the damaged file (and record) and say what to do (the command that
    rebuilds them repeats the command line's ``overrides`` of the dataset)."""
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
        dataset_args = " ".join(o for o in overrides if override_key(o).startswith("dataset"))
        raise DataError(f"{damage.where}: {damage.problem}. Rebuild the records with: python -m runner mode=convert "
                        f"{dataset_args}".rstrip() + f" (or delete {Path(damage.where).parent})") from None


def train_run(cfg: DictConfig, run_dir: str, dataset: Dataset, changed: dict | None,
              invocation: Invocation = ALONE, topology: Topology | None = None) -> dict | None:
    """Trains cfg on the prepared dataset in run_dir; ``changed`` (from runner.run.setup) is None in a cluster task
    that does not own the run dir, which records nothing. A cluster worker gives its ``topology``."""
    run = settings(cfg)
    topology = topology or Topology(placement(run.hardware, invocation.parallel_jobs))
    parts = build_parts(run, dataset, topology)
    describe(run, parts, run_dir)
    if changed is not None:
        rundir.record_start(run_dir, cfg, dataset.class_names, changed, parts.devices, invocation.overrides)
    with naming_damaged_records(dataset, invocation.overrides):
        return train(parts, TrainSettings.of(run), run_dir, recorded(run), topology.target,
                     after_eval=invocation.after_eval)


def eval_run(cfg: DictConfig, run_dir: str, dataset: Dataset, once: bool, until_step: int | None = None,
             invocation: Invocation = ALONE) -> dict | None:
    """Evaluates run_dir's latest checkpoint (``once``) or each new one, on the prepared dataset."""
    run = settings(cfg)
    parts = build_parts(run, dataset, Topology(placement(run.hardware, invocation.parallel_jobs)))
    describe(run, parts, run_dir)
    decay = run.moving_average_decay if run.eval_moving_average else None
    with naming_damaged_records(dataset, invocation.overrides):
        return evaluate(parts, run_dir, run.batch_size, list(run.eval_splits), moving_average_decay=decay,
                        once=once, interval_secs=run.eval_interval_secs, until_step=until_step,
                        which=run.checkpoint.name)
