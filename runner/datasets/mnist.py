"""MNIST: the standard IDX gz files, downloaded from mirrors and verified against the published md5s."""
from __future__ import annotations

from pathlib import Path

from runner.config.datasets import MnistConfig
from runner.core.errors import DataError
from runner.datasets import DATASETS
from runner.datasets.download import download, md5sum
from runner.datasets.idx_digits import IdxDigits

MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@DATASETS.register("mnist")
class Mnist(IdxDigits):
    def __init__(self, config: MnistConfig, md5: dict[str, str] | None = None):
        super().__init__(config, config.data_dir)
        self.download = config.download
        self.verify_md5 = config.verify_md5  # files found in data_dir; downloads from the mirrors are always verified
        self.mirrors = list(config.mirrors or [])
        self.md5 = md5 or MD5  # tests serve their own files

    def fetch(self, missing: list[Path]) -> None:
        if not self.download:
            names = ", ".join(p.name for p in missing)
            raise DataError(f"MNIST files missing in {self.data_dir}: {names}. Copy them there, or set "
                            f"dataset.download=true to fetch them from {', '.join(self.mirrors) or 'a mirror'}.")
        for path in missing:
            download(path.name, self.data_dir, self.mirrors, self.md5[path.name])

    def prepare(self) -> None:
        if self._arrays is None and self.verify_md5:
            for path in self.paths():
                if path.exists() and md5sum(path) != self.md5[path.name]:
                    raise DataError(f"{path}: md5 {md5sum(path)} does not match the published "
                                    f"{self.md5[path.name]}; delete the file so it is downloaded again, or set "
                                    f"dataset.verify_md5=false to read other MNIST-format files (Fashion-MNIST, a "
                                    f"re-split)")
        super().prepare()
