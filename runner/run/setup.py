"""The setup every training process makes before TensorFlow loads: the run dir locked and its resume checked by the
process that owns it (one process; a local cluster's launcher; a cluster's chief), then the dataset made ready."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from omegaconf import DictConfig

from runner.datasets.base import Dataset
from runner.run import rundir
from runner.run.data import prepared_dataset


@contextlib.contextmanager
def training_setup(cfg: DictConfig, run_dir: str, owner: bool = True) -> Iterator[tuple[Dataset, dict | None]]:
    """The prepared dataset and the changes from the run's saved config (runner.run.rundir.check_resume; None in a
    process that does not own the run dir, which records nothing), while the owner holds the run dir's lock."""
    with rundir.lock(run_dir) if owner else contextlib.nullcontext():
        changed = rundir.check_resume(run_dir, cfg) if owner else None
        yield prepared_dataset(cfg), changed
