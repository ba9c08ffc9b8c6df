"""Downloads that are verified by md5 and written atomically: nothing half-written is ever left behind."""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from runner.core.errors import DataError
from runner.core.files import atomic_path

log = logging.getLogger("runner")
_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Streams url to a temporary file beside dest, checks its md5, then renames it into place."""
    digest = hashlib.md5()
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(f"md5 mismatch for {url}: got {digest.hexdigest()}, expected {md5}")


def download(filename: str, dest_dir: str | os.PathLike, mirrors: list[str], md5: str, timeout: float = 60.0,
             setting: str = "dataset.mirrors") -> Path:
    """Fetches ``filename`` from the first mirror that serves it with the right md5; returns its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / filename
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        log.info("Downloading %s", url)
        try:
            _fetch(url, dest, md5, timeout)
            log.info("Downloaded %s (%d bytes, md5 %s)", dest, dest.stat().st_size, md5)
            return dest
        except (urllib.error.URLError, OSError, DataError) as err:
            failures.append(f"  {url}: {err}")
    tried = "\n".join(failures) or "  (no mirrors configured)"
    raise DataError(f"could not download {filename} into {dest_dir}; tried:\n{tried}\n"
                    f"Copy the file there by hand, or point {setting} at a reachable copy.")
