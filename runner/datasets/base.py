"""The dataset interface, written once: :class:`Dataset` is what every pipeline may use, and every dataset implements
all of it. Also what the file-backed datasets share: files in data_dir obtained when missing (one process at a
time), loaded once and split into train / validation (the first ``validation_size`` training examples) / test."""
from __future__ import annotations

import abc
import glob
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.config.datasets import DatasetConfig
from runner.core.errors import ConfigError, DataError
from runner.core.files import Manifest, folder_lock
from runner.datasets import augment as augments

log = logging.getLogger("runner")
Arrays = tuple[np.ndarray, np.ndarray]  # examples [N, *raw_shape] (uint8 or float32), int32 labels [N]


@dataclass(frozen=True)
class Records:
    """A split's record files as the queue and tf_data pipelines read them: each record is one example, which
    :meth:`Dataset.decode` turns into (example, label) in a batch."""

    kind: str  # "tfrecord", "fixed_length" (records of record_bytes), "text" (lines) or "file" (a whole file)
    files: tuple[str, ...]
    record_bytes: int = 0  # fixed_length
    header_bytes: int = 0  # fixed_length: bytes before the first record of each file
    skip_lines: int = 0  # text: header lines at the top of each file
    compression: str = ""  # tfrecord: "" or "GZIP" / "ZLIB"

    @property
    def smallest_file(self) -> int:
        """Bytes a file needs to hold one record."""
        return self.header_bytes + self.record_bytes if self.kind == "fixed_length" else 1

    def dataset(self, files: list[str] | None = None, parallel_reads: int = 1):
        """The records of ``files`` (default: all) as a tf.data.Dataset of scalar strings: in file order, or with
        ``parallel_reads`` > 1 (or -1, AUTOTUNE) read from that many files at once, interleaved a record from each
        in turn (the order is fixed unless the dataset's options allow otherwise). Whole files (``file``) are read
        where they are decoded: they have no reads to run in parallel here."""
        import tensorflow as tf

        files = list(self.files if files is None else files)
        reads = None if parallel_reads == 1 or len(files) == 1 else parallel_reads
        if self.kind == "tfrecord":
            return tf.data.TFRecordDataset(files, compression_type=self.compression, num_parallel_reads=reads)
        if self.kind == "text":
            lines = lambda f: tf.data.TextLineDataset(f).skip(self.skip_lines)  # noqa: E731
            names = tf.data.Dataset.from_tensor_slices(files)
            if reads is None:
                return names.flat_map(lines)
            cycle = None if reads == tf.data.AUTOTUNE else reads  # as the record readers do
            return names.interleave(lines, cycle_length=cycle, block_length=1, num_parallel_calls=reads)
        if self.kind == "file":  # each file is one record: its name, which decode reads
            return tf.data.Dataset.from_tensor_slices(files)
        return tf.data.FixedLengthRecordDataset(files, self.record_bytes, header_bytes=self.header_bytes,
                                                num_parallel_reads=reads)


@dataclass(frozen=True)
class Damage:
    """What :meth:`Dataset.damaged_records` found: the file (and record), what is wrong, and whether the file is a
    cache that ``mode=convert`` rebuilds (otherwise the user's own file)."""

    where: str
    problem: str
    cache: bool


class Dataset(abc.ABC):
    """What a pipeline may ask a dataset. ``raw`` examples are what :meth:`arrays` and :meth:`decode` give (images
    [H, W, C] or feature vectors [F], uint8 or float32); :meth:`preprocess` turns a batch of them into float32
    model inputs of ``output_shape``, with ``dataset.augment``'s distortions when training."""

    name: str = "dataset"  # its registry name, set by DATASETS.register
    kind: str = "dataset"  # what the examples are called in messages ("CIFAR", "MNIST", "image", ...)
    augment: str = "none"
    needs_tensorflow = False  # prepare() reads the files with TensorFlow ops

    def __init__(self, config: DatasetConfig):
        """``config``: the dataset's schema instance (runner.config.datasets), its values from the option's YAML."""
        self.config = config
        self.validation_size = config.validation_size
        self.augment = config.augment

    # -------------------------------------------------------------- what the examples are
    @property
    @abc.abstractmethod
    def num_classes(self) -> int: ...

    @property
    def class_names(self) -> list[str]:
        """Label id -> name (written to the run dir as labels.json)."""
        return [str(i) for i in range(self.num_classes)]

    @property
    @abc.abstractmethod
    def raw_shape(self) -> tuple[int, ...]: ...

    raw_dtype: str = "uint8"

    @property
    def images(self) -> bool:
        """Examples are images [H, W, C]; False: feature vectors, which only models taking vectors can use."""
        return len(self.raw_shape) == 3

    @property
    def output_shape(self) -> tuple[int, ...]:
        return augments.output_shape(self.augment, self.raw_shape, self.images)

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the files are, for messages."""

    @property
    @abc.abstractmethod
    def cache_dir(self) -> Path:
        """Where this dataset's caches (converted TFRecords, decoded arrays) go."""

    # -------------------------------------------------------------- the splits as arrays (feed_dict, preloaded)
    @abc.abstractmethod
    def prepare(self) -> None:
        """Makes sure the files are present and readable (obtaining them if this dataset can); cheap once done."""

    @abc.abstractmethod
    def num_examples(self, split: str) -> int: ...

    @abc.abstractmethod
    def arrays(self, split: str) -> Arrays:
        """The raw examples and int32 labels of a split (may be memory-mapped)."""

    @abc.abstractmethod
    def source_files(self, split: str) -> list[Path]:
        """The files a split's examples come from: a run stops, naming the file, when one changes under it."""

    # -------------------------------------------------------------- the splits as record files (queue, tf_data)
    files_hold_validation = True  # records("validation") works (else only with dataset.validation_size=0)

    @abc.abstractmethod
    def records(self, split: str) -> Records:
        """The record files of a split; ConfigError when the split has none of its own."""

    @abc.abstractmethod
    def decode(self, records):
        """TF, batched: a batch [B] of records -> (raw examples [B, *raw_shape], int32 labels [B])."""

    def decode_settings(self) -> dict:
        """The settings :meth:`decode` depends on besides the record files (a cache of decoded records is made
        again when one changes)."""
        return {}

    def has_validation(self) -> bool:
        """The validation split has examples."""
        return self.validation_size > 0

    def damaged_records(self) -> Damage | None:
        """After a read error: the damaged record file (and record) when one is found, else None."""
        return None

    convertible = False  # convert() writes the TFRecords the pipelines read

    def convert(self) -> dict[str, Path]:
        """``mode=convert``: writes the splits as TFRecords (rewriting them) and returns {split: path}."""
        raise ConfigError(f"mode=convert writes TFRecords; dataset={self.name} is read from its own files as they "
                          f"are")

    # -------------------------------------------------------------- preprocessing (dataset.augment)
    def preprocess(self, examples, training: bool):
        """TF, batched: raw examples -> float32 [B, *output_shape]."""
        return augments.preprocess_tf(self.augment, examples, training)

    def preprocess_np(self, examples: np.ndarray, training: bool, rng: np.random.Generator | None) -> np.ndarray:
        """numpy, batched: the same as :meth:`preprocess`."""
        return augments.preprocess_np(self.augment, examples, training, rng)


def match(root: Path, patterns: list[str]) -> list[Path]:
    """Files under ``root`` named by names or globs, each glob's matches sorted; a name or a glob that matches
    nothing stays as it is written, so the missing file can be named."""
    found = []
    for pattern in patterns:
        path = root / pattern
        matches = sorted(glob.glob(str(path))) if glob.has_magic(pattern) else []
        found += [Path(m) for m in matches] or [path]
    return found


def check_labels(labels: np.ndarray, num_classes: int, where) -> None:
    """Labels must be class ids 0..num_classes-1; the error names ``where(index)`` of the first bad one."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(f"{where(int(bad[0]))}: label {int(labels[bad[0]])} is outside 0..{num_classes - 1} "
                        f"({num_classes} classes); fix the label or the dataset's class count")


class FileDataset(Dataset):
    """A dataset whose files live in ``data_dir``: subclasses name them (:meth:`paths`), obtain missing ones
    (:meth:`fetch`) and read them (:meth:`read`), all at once into memory."""

    def __init__(self, config: DatasetConfig, data_dir: str):
        super().__init__(config)
        self.data_dir = Path(data_dir).expanduser()
        self._arrays: dict[str, Arrays] | None = None

    @property
    def location(self) -> str:
        return str(self.data_dir)

    @property
    def cache_dir(self) -> Path:
        return self.data_dir

    @abc.abstractmethod
    def paths(self) -> list[Path]: ...

    def fetch(self, missing: list[Path]) -> None:
        """Obtains the missing files, or raises DataError saying where it looked and what to do."""
        raise DataError(f"Failed to find file: {missing[0]}; check dataset.data_dir ({self.data_dir})")

    @abc.abstractmethod
    def read(self) -> tuple[Arrays, Arrays]:
        """(train, test) arrays from the files; raises DataError naming a bad file."""

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
        self.prepare()
        return self._arrays[split]

    def source_files(self, split: str) -> list[Path]:
        return self.paths()

    def num_examples(self, split: str) -> int:
        return len(self.arrays(split)[1])


def generated_dir(data_dir: str, spec: dict) -> str:
    """A generated dataset's folder: one per spec under data_dir, so jobs that generate other sizes or seeds (a
    sweep over dataset.num_train) never rewrite the files a running job reads."""
    return str(Path(data_dir).expanduser() / "-".join(f"{k}{v}" for k, v in sorted(spec.items())))


class Generated:
    """Mixin for datasets generated deterministically from ``self.spec`` (sizes and seed) by :meth:`generate`,
    in their spec's own folder (:func:`generated_dir`). A manifest, written after the files, records the spec and a
    stamp per file; the files are made again when it is missing (a generation was killed), disagrees with the spec,
    or a file changed."""

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
