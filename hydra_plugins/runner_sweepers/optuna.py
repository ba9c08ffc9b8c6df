"""``hydra/sweeper=optuna``: runner's search on Optuna (runner.sweeps.search); its settings are
conf/hydra/sweeper/optuna.yaml. Optuna is imported when a search starts, not when Hydra scans its plug-ins."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:  # read again, resolved, from the config setup() is given
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from runner.sweeps import sweep
        from runner.sweeps.search import Runner, Search, repeat_keys

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweeper = OmegaConf.to_container(self.config.hydra.sweeper, resolve=True)
        search = Search.of(sweeper, OmegaConf.select(self.config, "sweep_objective"), sweep_dir)
        launch = lambda overrides, first: self.launcher.launch(overrides, initial_job_idx=first)  # noqa: E731
        stopped = lambda: sweep.interrupted(sweep_dir) is not None  # noqa: E731
        Runner(search, sweep_dir, launch, stopped, repeat_keys(self.config)).run(arguments)
