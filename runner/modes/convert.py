"""mode=convert: the dataset's splits written as TFRecords (as convert_to_records.py does for MNIST), which the queue
and tf_data pipelines then read."""
from __future__ import annotations

import logging

from omegaconf import DictConfig

from runner.run.data import prepared_dataset
from runner.run.invocation import ALONE, Invocation

log = logging.getLogger("runner")


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> None:
    for split, path in prepared_dataset(cfg).convert().items():
        log.info("%s: %s", split, path)
