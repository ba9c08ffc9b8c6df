"""The option folders of installed packages (runner.config.packages) on Hydra's search path, after runner's own:
``model=keras_mlp`` finds a package's ``conf/model/keras_mlp.yaml`` as it finds runner's ``conf/model/mlp.yaml``."""
from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class PackagesSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from runner.config import packages

        for package in packages.installed():
            if package.conf is not None:
                search_path.append(provider=f"package {package.dist}",
                                   path=f"file://{package.conf}")
