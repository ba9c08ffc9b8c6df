"""The embedded offline dataset: MNIST-format digits generated deterministically on first use (see glyphs.py)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from runner.datasets import DATASETS
from runner.datasets.glyphs import generate
from runner.datasets.idx import write_idx
from runner.datasets.idx_digits import IdxDigits

log = logging.getLogger("runner")


@DATASETS.register("digits")
class Digits(IdxDigits):
    name = "digits"

    def __init__(self, data_dir: str, validation_size: int = 5000, num_train: int = 60000, num_test: int = 10000,
                 generator_seed: int = 20261125):
        super().__init__(data_dir, validation_size)
        self.spec = {"num_train": num_train, "num_test": num_test, "generator_seed": generator_seed}

    @property
    def _manifest(self) -> Path:
        return self.data_dir / "digits.json"

    def stale(self) -> bool:  # files made with other sizes or another seed are made again
        return self._manifest.exists() and json.loads(self._manifest.read_text()) != self.spec

    def fetch(self, missing: list[Path]) -> None:
        start = time.time()
        log.info("Generating the digits dataset (%d train + %d test images) in %s", self.spec["num_train"],
                 self.spec["num_test"], self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        p = self.paths()
        seed = self.spec["generator_seed"]
        for split, num, offset in (("train", self.spec["num_train"], 0), ("test", self.spec["num_test"], 1)):
            images, labels = generate(num, seed + offset)
            write_idx(p[f"{split}_images"], images)
            write_idx(p[f"{split}_labels"], labels)
        self._manifest.write_text(json.dumps(self.spec))
        log.info("Generated in %.1f s", time.time() - start)
