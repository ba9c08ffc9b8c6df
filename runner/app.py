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
def _task(cfg: DictConfig) -> dict | float | None:
    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)
        from runner.build import run  # imports TensorFlow

        return run(cfg, hydra_cfg.runtime.output_dir)
    except Exception as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # Record the failure in the job dir and let the sweep go on; the report lists it and the sweep's exit
            # status says some jobs failed.
            if not isinstance(err, RunnerError):
                log.exception("job failed")
            message = f"{type(err).__name__}: {err}".strip().splitlines()[-1]
            log.error("error: %s", message)
            Path(hydra_cfg.runtime.output_dir, "error.txt").write_text(message + "\n")
            return float("nan") if cfg.get("sweep_objective") else {"status": "failed", "error": message}
        if not isinstance(err, RunnerError):
            raise
        code = getattr(err, "exit_code", 2)  # an interrupted run exits 128 + signal number
        log.error("%s: %s", "error" if code == 2 else "stopped", err)
        sys.exit(code)


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


def _help() -> str:
    """The app's help, read straight from conf/ (Hydra's own --help composes every group and takes seconds)."""
    conf = Path(CONF_DIR)
    groups = "".join(
        f"  {d.name:<11} {', '.join(sorted(p.stem for p in d.glob('*.yaml')))}\n"
        for d in sorted(conf.iterdir()) if d.is_dir() and d.name not in ("preset", "hydra"))  # presets: by datasets
    lines = (conf / "config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("mode:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("hydra:"))
    keys = "".join(f"  {line}\n" for line in lines[start:end] if line.strip())
    return HELP.format(groups=groups, keys=keys)


def main() -> None:
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(_help(), end="")
        return
    _task()
