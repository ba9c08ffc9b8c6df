"""Safe files for caches shared by parallel jobs: atomic replacement, a per-folder lock, leftovers cleaned up, and
manifests that describe a cache's files so a damaged or half-rebuilt cache is never used.

A manifest is written last and atomically, after the files it describes; it is removed before they are rewritten.
So a cache whose manifest is missing or disagrees with its files is incomplete, whatever killed its writer.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from runner.core.errors import DataError

_UMASK = os.umask(0)
os.umask(_UMASK)
_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a unique temporary path beside ``path``; renames it into place on success, removes it on failure.
    The file gets the usual mode (0666 less the umask), so a cache can be shared like any file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)  # a link at path is replaced, never followed
    except OSError as err:  # a full disk, a size limit: said of the file meant, not of its temporary name
        if type(err).__module__ != "builtins" or err.errno is None:
            raise  # not the file system's (a download's HTTP error, say)
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def full_disk(folder: Path, what: str, err: Exception) -> DataError:
    """The one-line error of a cache that could not be written (a full disk, a file size limit): nothing partial is
    left, since every file is written to a temporary name first."""
    said = getattr(err, "strerror", None) or "no space left on the device, or a file size limit reached"
    return DataError(f"cannot write the {what} in {folder}: {said}; free some space or choose another folder "
                     f"(nothing partial was left)")


def write_text(path: str | os.PathLike, text: str) -> None:
    """A result file written whole or not at all: to a temporary name, then renamed over ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, value, **dumps) -> None:
    write_text(path, json.dumps(value, indent=2, **dumps) + "\n")


def shown(path: str | os.PathLike) -> str:
    """A path as a message names it: relative to the working folder when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def remove_leftovers(folder: Path) -> None:
    """Deletes ``*.part`` files that killed writers left (call with the folder's lock held)."""
    for leftover in folder.glob("**/.*.part"):
        if leftover.is_dir():  # a folder being written (runner.pipelines.saved)
            shutil.rmtree(leftover, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (created if needed), so one process at a time fetches or converts;
    leftovers of killed writers are removed once the lock is held."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "w")
    except OSError as err:
        raise DataError(f"{folder}: cannot write the data cache there ({err.strerror}); make it writable, or "
                        f"point dataset.data_dir at a writable folder") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            remove_leftovers(folder)
            yield
        except OSError as err:  # a write failed (disk full, size limit): say where
            err.filename = err.filename or str(folder)
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def crc32(path: Path) -> int:
    value = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            value = zlib.crc32(chunk, value)
    return value


def stamp(path: Path) -> dict:
    """What a manifest records of a file: its size, modification time and CRC-32."""
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "crc32": crc32(path)}


def _matches(path: Path, recorded: dict) -> bool:
    """Size and mtime as recorded: the file is unchanged. Same size, other mtime (a copy, a restore): the CRC
    decides. Reading every file on every run is left to the readers, which check their own formats."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_size != recorded["bytes"]:
        return False
    return st.st_mtime_ns == recorded["mtime_ns"] or crc32(path) == recorded["crc32"]


class Manifest:
    """A cache's description: what it was made from (``spec``) and a stamp per file, relative to ``root``."""

    def __init__(self, path: Path, root: Path):
        self.path = path
        self.root = root

    def problem(self, spec: dict, files: list[Path]) -> str | None:
        """Why the cache can't be used as it is (None: it can)."""
        if not self.path.exists():
            return f"{self.path} is missing (the cache was never completed)"
        try:
            recorded = json.loads(self.path.read_text())
            if recorded["spec"] != spec:
                return f"it was made with {recorded['spec']}, not {spec}"
            stamps = recorded["files"]
        except (ValueError, KeyError, TypeError):
            return f"{self.path} is damaged"
        for path in files:
            name = str(path.relative_to(self.root))
            if name not in stamps or not _matches(path, stamps[name]):
                return f"{path} is missing, truncated or changed since the cache was made"
        return None

    def invalidate(self) -> None:
        """Called before the files are rewritten: until :meth:`write`, the cache reads as incomplete."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def write(self, spec: dict, files: list[Path]) -> None:
        write_json(self.path, {"spec": spec, "files": {str(p.relative_to(self.root)): stamp(p) for p in files}})
