"""``experiments://DIR`` on Hydra's search path: DIR/NAME.yaml is the ``experiment`` group's option NAME.

A user's experiments are plain YAML files in one folder (``experiments/NAME.yaml``, chosen with ``experiment=NAME``),
not in a config root's ``experiment/`` subfolder, so they need a config source of their own. runner's
``conf/config.yaml`` puts the working folder's ``experiments/`` on the search path, after runner's own configs;
``hydra.searchpath=[experiments:///ANOTHER/DIR]`` chooses another folder. A relative DIR is taken from the folder
the command runs in, and a folder that does not exist holds no experiment.
"""
from __future__ import annotations

import os

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

GROUP = "experiment"


class ExperimentsConfigSource(ConfigSource):
    def __init__(self, provider: str, path: str) -> None:
        folder = path.split("://", 1)[1] if "://" in path else path
        super().__init__(provider=provider, path=f"{self.scheme()}://{os.path.abspath(folder or 'experiments')}")

    @staticmethod
    def scheme() -> str:
        return "experiments"

    @property
    def folder(self) -> str:
        return self.path  # the base class keeps the path without its scheme

    def _file(self, config_path: str) -> str | None:
        """The file of ``experiment/NAME`` (or ``experiment/NAME.yaml``); None for any other path."""
        group, _, name = self._normalize_file_name(config_path).partition("/")
        if group != GROUP or not name or "/" in name:
            return None
        return os.path.join(self.folder, name)

    def load_config(self, config_path: str) -> ConfigResult:
        file = self._file(config_path)
        if file is None or not os.path.isfile(file):
            raise ConfigLoadError(f"Config not found : {config_path} in {self.folder}")
        with open(file, encoding="utf-8") as f:
            header = ConfigSource._get_header_dict(f.read(512))
            f.seek(0)
            return ConfigResult(config=OmegaConf.load(f), path=self.full_path(), provider=self.provider, header=header)

    def available(self) -> bool:
        return True  # a folder without experiments/ is no error: it has none

    def is_group(self, config_path: str) -> bool:
        return config_path in ("", GROUP) and os.path.isdir(self.folder)

    def is_config(self, config_path: str) -> bool:
        file = self._file(config_path)
        return file is not None and os.path.isfile(file)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if not self.is_group(config_path):
            return []
        if config_path == "":
            return [GROUP] if results_filter in (None, ObjectType.GROUP) else []
        files: list[str] = []
        for name in os.listdir(self.folder):
            if name.endswith(".yaml") and os.path.isfile(os.path.join(self.folder, name)):
                self._list_add_result(files=files, file_path=f"{GROUP}/{name}", file_name=name,
                                      results_filter=results_filter)
        return sorted(set(files))
