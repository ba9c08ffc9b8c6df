"""The IDX file format of MNIST: a big-endian header (magic, then one uint32 size per dimension) and raw data.

Plain or gzip-compressed (by the ``.gz`` suffix). Errors name the file and what is wrong with it.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from runner.core.errors import DataError
from runner.core.files import atomic_path

# type code in the third magic byte -> numpy dtype (IDX stores multi-byte types big-endian)
_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}


def _open(path: Path, mode: str, gz: bool):
    return gzip.open(path, mode, compresslevel=6) if gz else open(path, mode)


def read_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) from an IDX file's header, reading only its first bytes."""
    path = Path(path)
    try:
        with _open(path, "rb", path.suffix == ".gz") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            dims = f.read(4 * head[3])
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    if len(dims) < 4 * head[3]:
        raise DataError(f"{path}: truncated IDX header")
    return _DTYPES[head[2]].newbyteorder("="), struct.unpack(f">{head[3]}I", dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file into an array of its own shape; raises DataError if it is truncated or malformed."""
    path = Path(path)
    try:
        with _open(path, "rb", path.suffix == ".gz") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read ({err}); delete it so it is fetched or generated again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} data bytes) but the file holds "
                        f"{len(raw) - header}; the file is truncated or corrupt, delete it and fetch it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes an array as an IDX file, atomically (a temporary file renamed into place)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_path(path) as tmp, _open(tmp, "wb", path.suffix == ".gz") as f:
        f.write(header)
        f.write(array.astype(_DTYPES[code]).tobytes())
