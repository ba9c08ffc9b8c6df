"""What every dataset shares: files in data_dir, obtained when missing (one process at a time), loaded once, and
split into train / validation (the first ``validation_size`` training examples) / test."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from runner.datasets.files import Manifest, folder_lock
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

    def damaged_records(self) -> tuple[str, str] | None:
        """(file, what is wrong) of a damaged record file the pipelines read, for datasets whose records carry
        checksums; None when none is found."""
        return None

    def missing(self) -> list[Path]:
        """The files to obtain before the dataset can be read."""
        return [p for p in self.paths() if not p.exists()]

    def prepare(self) -> None:
        """Makes sure the files are present and valid, and loads the splits (once). A complete dataset is read
        without taking its folder's lock, so a read-only copy can be used."""
        if self._arrays is not None:
            return
        if self.missing():
            with folder_lock(self.data_dir):  # parallel jobs: one fetches, the others wait and read
                missing = self.missing()
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
    """Mixin for datasets generated deterministically from ``self.spec`` (sizes and seed) by :meth:`generate`.
    A manifest, written after the files, records the spec and a stamp per file; the files are made again when it
    is missing (a generation was killed), disagrees with the spec, or a file changed."""

    spec: dict
    data_dir: Path
    name: str

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.data_dir / f"{self.name}.json", self.data_dir)

    def missing(self) -> list[Path]:
        return self.paths() if self.manifest.problem(self.spec, self.paths()) else []

    def generate(self) -> None:
        raise NotImplementedError

    def fetch(self, missing: list[Path]) -> None:
        start = time.time()
        if any(p.exists() for p in missing):
            log.info("Rebuilding the %s dataset in %s: %s", self.name, self.data_dir,
                     self.manifest.problem(self.spec, self.paths()))
        log.info("Generating the %s dataset (%d train + %d test images) in %s", self.name, self.spec["num_train"],
                 self.spec["num_test"], self.data_dir)
        self.manifest.invalidate()
        self.generate()
        self.manifest.write(self.spec, self.paths())
        log.info("Generated in %.1f s", time.time() - start)
