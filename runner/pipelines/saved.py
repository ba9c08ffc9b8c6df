"""``pipeline.cache=disk``: a split decoded once and saved with tf.data's own ``Dataset.save`` under the dataset's
cache folder, then loaded (``Dataset.load``) by every later run, whatever its pipeline settings.

The save is one shard, so it loads in the records' order: the same examples in the same order as decoding them
again, and a worker's shard is cut after loading as it is cut from the records. It is checked like the other
caches: its manifest, written after its data, says what it was made from (the dataset's decoding settings and its
files by size, mtime and CRC-32) and stamps the saved files; a save that disagrees (a changed source file, a killed
writer, a damaged file) is rebuilt under the folder's lock before it is read, and one changed while a run reads it
stops the run naming the file (runner.pipelines.base.watch).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from runner.core.errors import DataError, op_error_text
from runner.core.files import Manifest, folder_lock
from runner.pipelines.base import record_files, watch

log = logging.getLogger("runner")
DECODE_CHUNK = 256  # records decoded at once


def _stamps(paths) -> list:
    out = []
    for path in map(Path, paths):
        st = path.stat()
        out.append([str(path), st.st_size, st.st_mtime_ns])
    return out


def _spec(dataset, split: str, records) -> tuple[dict, str]:
    """(what the save is made from, the name of its folder): the folder is named by everything but the source
    files' stamps, so a changed file rebuilds its save in place instead of adding another."""
    made_by = {"dataset": type(dataset).__name__, "split": split, "records": dataclasses.asdict(records),
               "decoding": dataset.decode_settings(), "raw_shape": list(dataset.raw_shape),
               "raw_dtype": str(dataset.raw_dtype), "num_classes": dataset.num_classes}
    made_by = json.loads(json.dumps(made_by, default=str))  # as the manifest holds it: tuples are lists
    name = hashlib.sha1(json.dumps(made_by, sort_keys=True).encode()).hexdigest()[:12]
    sources = sorted({*records.files, *map(str, dataset.source_files(split))})
    return {**made_by, "sources": _stamps(sources)}, f"{split}-{name}"


def saved(dataset, split: str) -> tf.data.Dataset:
    """The split's (example, label) pairs, unbatched, from its save (made first when missing or stale)."""
    records = record_files(dataset, split)
    spec, name = _spec(dataset, split, records)
    folder = dataset.cache_dir / "tf_data" / name
    data = folder / "data"
    manifest = Manifest(folder / "manifest.json", folder)
    if _problem(manifest, spec, data):
        with folder_lock(folder):  # parallel jobs: one saves, the others wait and load
            problem = _problem(manifest, spec, data)
            if problem:
                _save(dataset, split, records, folder, manifest, spec, problem)
    files = _files(data)
    watch(files)  # a save changed under a running run stops it, naming the file
    return tf.data.Dataset.load(str(data))


def _problem(manifest: Manifest, spec: dict, data: Path) -> str | None:
    """Why the save can't be loaded as it is (None: it can), a changed source file named first."""
    try:
        recorded = json.loads(manifest.path.read_text())["spec"]["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    changed = [path for path, *stamp in spec["sources"] if recorded and [path, *stamp] not in recorded]
    if changed:
        return f"{changed[0]} changed since the save was made"
    return manifest.problem(spec, _files(data))


def _files(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else [data / "dataset_spec.pb"]


def _save(dataset, split: str, records, folder: Path, manifest: Manifest, spec: dict, problem: str) -> None:
    data = folder / "data"
    if data.exists():
        log.info("Rebuilding the saved %s split in %s: %s", split, folder, problem)
    manifest.invalidate()
    start = time.time()
    log.info("Decoding the %s split of %s once into %s (pipeline.cache=disk)", split, dataset.location, folder)
    tmp = Path(tempfile.mkdtemp(prefix=".data.", suffix=".part", dir=folder))
    try:
        with tf.Graph().as_default():  # the save runs now, in a graph of its own
            ds = records.dataset().batch(DECODE_CHUNK)
            ds = ds.map(dataset.decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
            op = ds.save(str(tmp), shard_func=lambda example, label: tf.constant(0, tf.int64))  # one shard: in order
            with tf.compat.v1.Session() as sess:
                sess.run(op)
    except tf.errors.OpError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        damage = dataset.damaged_records()
        if damage is not None:
            raise DataError(f"{damage.where}: {damage.problem}; fix or remove it (nothing was saved)") from None
        raise DataError(f"cannot save the decoded {split} split in {folder}: {op_error_text(err)}; free some "
                        f"space there, or use pipeline.cache=memory (nothing partial was left)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(data, ignore_errors=True)
    tmp.rename(data)
    manifest.write(spec, _files(data))
    log.info("Saved in %.1f s", time.time() - start)
