"""What every dataset shares: files in data_dir, obtained when missing (one process at a time), loaded once, and
split into train / validation (the first ``validation_size`` training examples) / test."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from runner.datasets.files import folder_lock
from runner.errors import ConfigError

log = logging.getLogger("runner")
Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images [N, H, W, C], int32 labels [N]


class FileDataset:
    """Subclasses name their files (:meth:`paths`), obtain missing ones (:meth:`fetch`) and read them
    (:meth:`read`)."""

    name = "dataset"

    def __init__(self, data_dir: str, validation_size: int):
        self.data_dir = Path(data_dir).expanduser()
        self.validation_size = validation_size
        self._arrays: dict[str, Arrays] | None = None

    def paths(self) -> list[Path]:
        raise NotImplementedError

    def fetch(self, missing: list[Path]) -> None:
        """Obtains the missing files, or raises DataError saying where it looked and what to do."""
        raise NotImplementedError

    def read(self) -> tuple[Arrays, Arrays]:
        """(train, test) arrays from the files; raises DataError naming a bad file."""
        raise NotImplementedError

    def stale(self) -> bool:
        """Whether files that exist must be made again (generated data whose settings changed)."""
        return False

    def prepare(self) -> None:
        """Makes sure the files are present and valid, and loads the splits (once)."""
        if self._arrays is not None:
            return
        with folder_lock(self.data_dir):  # parallel jobs: one fetches, the others wait and read
            stale = self.stale()
            missing = [p for p in self.paths() if stale or not p.exists()]
            if missing:
                self.fetch(missing)
        (images, labels), test = self.read()
        v = self.validation_size
        if not 0 <= v < len(labels):
            raise ConfigError(f"dataset.validation_size={v} must be smaller than the {len(labels)} training "
                              f"examples in {self.data_dir}")
        self._arrays = {"train": (images[v:], labels[v:]), "validation": (images[:v], labels[:v]), "test": test}

    def arrays(self, split: str) -> Arrays:
        """uint8 images [N, H, W, C] and int32 labels [N] of a split."""
        self.prepare()
        return self._arrays[split]

    def num_examples(self, split: str) -> int:
        return len(self.arrays(split)[1])


class Generated:
    """Mixin for datasets generated deterministically from ``self.spec`` (sizes and seed) by :meth:`generate`;
    the files are made again when the spec changes."""

    spec: dict
    data_dir: Path
    name: str

    @property
    def _manifest(self) -> Path:
        return self.data_dir / f"{self.name}.json"

    def stale(self) -> bool:
        return self._manifest.exists() and json.loads(self._manifest.read_text()) != self.spec

    def generate(self) -> None:
        raise NotImplementedError

    def fetch(self, missing: list[Path]) -> None:
        start = time.time()
        log.info("Generating the %s dataset (%d train + %d test images) in %s", self.name, self.spec["num_train"],
                 self.spec["num_test"], self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.generate()
        self._manifest.write_text(json.dumps(self.spec))
        log.info("Generated in %.1f s", time.time() - start)
