"""CIFAR-10, binary version: extracted from cifar-10-binary.tar.gz, which is downloaded and md5-verified when
missing."""
from __future__ import annotations

import logging
import tarfile
from pathlib import Path

from runner.config.datasets import Cifar10Config
from runner.core.errors import DataError
from runner.datasets import DATASETS
from runner.datasets.cifar_format import FOLDER, CifarBinary
from runner.datasets.download import download, md5sum

log = logging.getLogger("runner")
ARCHIVE = "cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


@DATASETS.register("cifar10")
class Cifar10(CifarBinary):
    def __init__(self, config: Cifar10Config, md5: str = MD5):
        super().__init__(config, config.data_dir)
        self.download = config.download
        self.url = config.url
        self.md5 = md5  # tests serve their own archive

    def fetch(self, missing: list[Path]) -> None:
        archive = self.data_dir / ARCHIVE
        if not archive.exists():
            if not self.download:
                raise DataError(f"Failed to find file: {missing[0]} (nor {archive}). Put the CIFAR-10 binary "
                                f"batches or {ARCHIVE} in {self.data_dir}, or set dataset.download=true.")
            base, name = self.url.rsplit("/", 1)
            download(name, self.data_dir, [base], self.md5, setting="dataset.url")
            if name != ARCHIVE:
                (self.data_dir / name).rename(archive)
        elif md5sum(archive) != self.md5:
            raise DataError(f"{archive}: md5 {md5sum(archive)} does not match the published {self.md5}; delete it "
                            f"so it is downloaded again")
        log.info("Extracting %s", archive)
        try:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(f"{FOLDER}/") and m.isfile()]
                tar.extractall(self.data_dir, members=members, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise DataError(f"{archive}: cannot be extracted ({err}); delete it so it is downloaded again") from None
        still = [p.name for p in missing if not p.exists()]
        if still:
            raise DataError(f"{archive} does not contain {', '.join(still)} under {FOLDER}/")
