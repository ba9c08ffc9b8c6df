"""The command line: compose the config with Hydra, validate it, then build and run.

TensorFlow is imported only once a run starts, so ``--help`` and ``--cfg job`` answer instantly.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.config import register_resolvers, register_schemas, validate
from runner.errors import RunnerError

register_schemas()
register_resolvers()
log = logging.getLogger("runner")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _task(cfg: DictConfig) -> dict | None:
    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)
        from runner.build import run  # imports TensorFlow

        return run(cfg, hydra_cfg.runtime.output_dir)
    except RunnerError as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on with the others
        log.error("error: %s", err)
        sys.exit(2)


def main() -> None:
    _task()
