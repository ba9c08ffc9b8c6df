"""The resolvers of conf/config.yaml's hydra section: where Hydra writes a job's config (``runner.subdir``), a sweep's
dir by its command (``runner.sweep_key``, runner.sweeps.sweep), under the folder it was started from
(``runner.cwd``)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from omegaconf import OmegaConf

from runner.config.hydra import schema_of
from runner.core.errors import ConfigError
from runner.distributed.roles import writes_run_dir
from runner.run import rundir
from runner.sweeps import sweep


@functools.cache  # resolved again later in the same run: the same answer
def hydra_subdir(mode: str, output_dir: str, hardware: str = "cpu", ps: int = 1, resolver: str = "auto"
                 ) -> str | None:
    """Where Hydra writes this job's config: ``.hydra`` for a new training run; a numbered folder under
    ``.hydra/resumes/`` when the run dir already holds a trained run, whose config must stay as it is;
    ``.hydra/<mode>`` for eval, bench and convert; nowhere for a cluster task that does not own the run dir."""
    try:
        if mode == "train" and not writes_run_dir(schema_of("hardware", hardware).processes, int(ps), resolver):
            return None
    except ConfigError:  # said by the run itself, with its exit status
        pass
    if mode != "train":
        return f".hydra/{mode}"
    trained = rundir.has_checkpoints(output_dir) or rundir.in_use(output_dir)
    if not (Path(output_dir) / rundir.SAVED_CONFIG).exists() or not trained:
        return ".hydra"
    resumes = Path(output_dir) / ".hydra" / "resumes"
    taken = [int(p.name) for p in resumes.glob("*") if p.name.isdigit()] if resumes.is_dir() else []
    return f".hydra/resumes/{max(taken, default=0) + 1}"


def register_resolvers() -> None:
    """The resolvers of conf/config.yaml's hydra section: where Hydra writes a job's config, and a sweep's dir by its
    command (runner.sweeps.sweep), under the folder it was started from."""
    for name, resolver, cache in (("runner.subdir", hydra_subdir, False),
                                  ("runner.sweep_key", sweep.sweep_key, True),
                                  ("runner.cwd", os.getcwd, True)):  # the sweep's folder, not a Ray worker's
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=cache)
