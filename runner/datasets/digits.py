"""The embedded offline dataset: MNIST-format digits generated deterministically on first use (see glyphs.py)."""
from __future__ import annotations

from runner.config.datasets import DigitsConfig
from runner.datasets import DATASETS
from runner.datasets.base import Generated, generated_dir
from runner.datasets.glyphs import generate
from runner.datasets.idx_digits import IdxDigits
from runner.datasets.idx_format import write_idx


@DATASETS.register("digits")
class Digits(Generated, IdxDigits):
    def __init__(self, config: DigitsConfig):
        self.spec = {"num_train": config.num_train, "num_test": config.num_test,
                     "generator_seed": config.generator_seed}
        super().__init__(config, generated_dir(config.data_dir, self.spec))

    def generate(self) -> None:
        files = self.files()
        seed = self.spec["generator_seed"]
        for split, num, offset in (("train", self.spec["num_train"], 0), ("test", self.spec["num_test"], 1)):
            images, labels = generate(num, seed + offset)
            write_idx(files[f"{split}_images"], images)
            write_idx(files[f"{split}_labels"], labels)
