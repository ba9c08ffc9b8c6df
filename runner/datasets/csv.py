"""CSV tables: one example per row, numeric feature columns and a label column: integers 0..N-1, or class names
(such as iris species), numbered in sorted order as image folders number theirs. ``train_files`` and
``test_files`` are globs under ``root``; ``header`` says whether each file starts with a row of column names.
Columns are named by header name or by 0-based index; ``feature_columns`` null takes every column but the label.
``column_defaults`` fills missing values per column (decode_csv's record_defaults); a column without one must have
a value in every row.

The queue reads the files with TextLineReader, tf_data with TextLineDataset; both parse a batch of lines with
decode_csv. The examples are float32 feature vectors, for models that take vectors (``model=mlp``).
"""
from __future__ import annotations

import csv as pycsv
from functools import cached_property
from pathlib import Path

from runner.config.datasets import CsvConfig
from runner.core.errors import ConfigError, DataError
from runner.datasets import DATASETS
from runner.datasets.base import Records, match
from runner.datasets.decoded import Decoded


@DATASETS.register("csv")
class Csv(Decoded):
    kind = "CSV"
    raw_dtype = "float32"
    images = False
    files_hold_validation = False

    def __init__(self, config: CsvConfig):
        super().__init__(config)
        self.patterns = {"train": list(config.train_files), "test": list(config.test_files)}
        self.header = config.header
        self.label_column = str(config.label_column)
        columns = config.feature_columns
        self.feature_columns = None if columns is None else [str(c) for c in columns]
        self.column_defaults = {str(k): float(v) for k, v in (config.column_defaults or {}).items()}
        self.field_delim = config.field_delim
        self._num_classes = config.num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @cached_property
    def _label_names(self) -> list[str] | None:
        """The class names of a label column that holds names, not integers (sorted: label i is the i-th); None for
        integer labels. Read from the training files; a name the test files add is an error naming its line."""
        label = self._columns[0]
        names = set()
        for path in match(self.root, self.patterns["train"]):
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = pycsv.reader(f, delimiter=self.field_delim)
                if self.header:
                    next(rows, None)
                names.update(row[label].strip() for row in rows if len(row) > label and row[label].strip())
        if all(_integer(n) for n in names):
            return None
        found = sorted(names)
        if len(found) != self._num_classes:
            raise ConfigError(f"dataset.num_classes={self._num_classes}, but the label column {self.label_column!r} "
                              f"holds {len(found)} class names ({', '.join(found[:10])}"
                              f"{', ...' if len(found) > 10 else ''}): set dataset.num_classes={len(found)}")
        return found

    @property
    def class_names(self) -> list[str]:
        return self._label_names or super().class_names

    # -------------------------------------------------------------- columns
    @cached_property
    def _names(self) -> list[str]:
        """The column names: the header's, or the indices "0", "1", ... of the first row."""
        first = match(self.root, self.patterns["train"])[0]
        try:
            with open(first, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of a name
                row = next(pycsv.reader(f, delimiter=self.field_delim), None)
        except OSError as err:
            raise DataError(f"Failed to find file: {first} ({err.strerror})") from None
        if not row:
            raise DataError(f"{first}: empty; the first row must hold the {'column names' if self.header else 'data'}")
        return [name.strip() for name in row] if self.header else [str(i) for i in range(len(row))]

    def _index(self, column: str, setting: str) -> int:
        names = self._names
        if column in names:
            return names.index(column)
        if column.isdigit() and int(column) < len(names):
            return int(column)
        raise ConfigError(f"{setting}: column {column!r} is not in the table (columns: {', '.join(names)})")

    @cached_property
    def _columns(self) -> tuple[int, list[int]]:
        """(label index, feature indices in table order)."""
        label = self._index(self.label_column, "dataset.label_column")
        if self.feature_columns is None:
            features = [i for i in range(len(self._names)) if i != label]
        else:
            features = sorted(self._index(c, "dataset.feature_columns") for c in self.feature_columns)
        if label in features:
            raise ConfigError(f"dataset.feature_columns contains the label column {self.label_column!r}")
        if not features:
            raise ConfigError("the table has no feature column besides the label; set dataset.feature_columns")
        for column in self.column_defaults:
            self._index(column, "dataset.column_defaults")
        return label, features

    @property
    def raw_shape(self) -> tuple[int]:
        return (len(self._columns[1]),)

    # -------------------------------------------------------------- files and records
    def split_files(self, split: str) -> list[Path]:
        return [] if split == "validation" else match(self.root, self.patterns[split])

    def settings(self) -> dict:
        return {"header": self.header, "label_column": self.label_column, "feature_columns": self.feature_columns,
                "column_defaults": self.column_defaults, "field_delim": self.field_delim,
                "class_names": self._label_names}

    def source(self, files: list[str]) -> Records:
        return Records("text", tuple(files), skip_lines=int(self.header))

    def describe_record(self, file: Path, index: int) -> str:
        return f"{file}: line {index + 1 + int(self.header)}"

    def decode(self, lines):
        """Lines [B] -> (float32 features [B, F], int32 labels [B])."""
        import tensorflow as tf

        label, features = self._columns
        names = self._names
        selected = sorted([label, *features])

        named = self._label_names

        def default(i: int):
            value = self.column_defaults.get(names[i], self.column_defaults.get(str(i)))
            dtype = (tf.string if named else tf.int32) if i == label else tf.float32
            if value is not None and dtype == tf.string:
                value = str(value)
            return tf.constant([] if value is None else [value], dtype)  # empty: the value is required

        lines = tf.strings.regex_replace(lines, "^\ufeff", "")  # a UTF-8 byte-order mark, read as utf-8-sig
        columns = tf.io.decode_csv(lines, [default(i) for i in selected], field_delim=self.field_delim,
                                   select_cols=selected)
        by_index = dict(zip(selected, columns))
        labels = by_index[label]
        if named:  # a name's index; a name not among them becomes -1, refused as out of range naming its line
            matches = tf.equal(tf.strings.strip(labels)[:, None], tf.constant(named)[None, :])
            labels = tf.where(tf.reduce_any(matches, axis=1),
                              tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=1), tf.int32), -1)
        return tf.stack([by_index[i] for i in features], axis=1), labels


def _integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
