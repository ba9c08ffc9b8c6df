"""Field helpers of the schemas: a range or a set of choices kept in a field's metadata, read by
runner.config.checks."""
from __future__ import annotations

from dataclasses import field
from typing import Any

from omegaconf import MISSING


def bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, auto: int | None = None,
            infinite: bool = False, default: Any = MISSING) -> Any:
    """A field whose value must lie in [lo, hi] (or (lo, hi] with ``lo_open``); None bounds are open-ended.
    ``auto`` is a value allowed besides the range (such as -1 for AUTOTUNE); ``infinite``: inf is allowed too (no
    limit), where the upper bound is open."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "auto": auto,
                                            "infinite": infinite})


def one_of(*choices: str | int, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"choices": choices})


def sizes(length: int) -> Any:
    """A list of ``length`` sizes (an image's height, width, ...), each at least 1."""
    return field(default=MISSING, metadata={"length": length, "lo": 1, "hi": None})
