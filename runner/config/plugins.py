"""Which of Hydra's plug-ins a command loads. Hydra imports every installed plug-in module before it composes a
config (the launchers' and sweepers' modules bring joblib, numpy and Ray's configs with them); a command that only
shows a config needs none of them unless its config chooses one. :func:`core_only` gives Hydra its own plug-ins
alone, and :func:`all_installed` every one again (for a config that chooses a launcher or sweeper of a plug-in)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any


def core_only() -> None:
    """Hydra's plug-in registry, holding Hydra's own plug-ins only (its config sources, basic launcher and
    sweeper), runner's experiments config source and installed packages' options, in place of the scan of every
    installed one that its first use would make."""
    import hydra._internal.core_plugins as core
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    from hydra_plugins.runner_experiments import ExperimentsConfigSource
    from hydra_plugins.runner_parts import PackagesSearchPath

    class CorePlugins(Plugins):
        def _initialize(self) -> None:
            self.plugin_type_to_subclass_list = defaultdict(list)
            self.class_name_to_class = {}
            scanned, self.stats = self._scan_all_plugins(modules=[core])
            for plugin in scanned:
                self._register(plugin)
            self._register(ExperimentsConfigSource)  # and runner's experiments:// (conf/config.yaml)
            self._register(PackagesSearchPath)  # and installed packages' options (runner.config.packages)

    registry: Any = object.__new__(CorePlugins)
    registry.__init__()
    Singleton._instances[Plugins] = registry


def all_installed() -> None:
    """Hydra's plug-in registry as Hydra makes it: every installed plug-in, scanned on its next use."""
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    Singleton._instances.pop(Plugins, None)
