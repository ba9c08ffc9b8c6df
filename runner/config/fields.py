"""Field helpers of the schemas: a range or a set of choices kept in a field's metadata, read by
runner.config.checks, and the tags that say what a key may do (:func:`keys_tagged` in runner.config.schema lists
them), so no list of keys is kept apart from the schema."""
from __future__ import annotations

from dataclasses import field
from typing import Any

from omegaconf import MISSING

# Tags of a field, in its metadata:
RESUME = "resume"  # a resumed run may change it: how long, how often, where and how visibly to train
EVAL = "eval"  # mode=eval takes it from its command line instead of the run's saved config
TASK = "task"  # a local cluster's tasks take it from the launcher's hardware (the rest are the launcher's own)
POOL = "pool"  # one of TensorFlow's thread pools (mode=tune searches them with tune.threads)


def setting(*tags: str, default: Any = MISSING, default_factory: Any = None) -> Any:
    """A field with no range or choices, tagged."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"tags": tags})
    return field(default=default, metadata={"tags": tags})


def tags_of(f: Any) -> tuple[str, ...]:
    return tuple(f.metadata.get("tags", ()))


def bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, auto: int | None = None,
            infinite: bool = False, default: Any = MISSING, tags: tuple[str, ...] = ()) -> Any:
    """A field whose value must lie in [lo, hi] (or (lo, hi] with ``lo_open``); None bounds are open-ended.
    ``auto`` is a value allowed besides the range (such as -1 for AUTOTUNE); ``infinite``: inf is allowed too (no
    limit), where the upper bound is open."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "auto": auto,
                                            "infinite": infinite, "tags": tags})


def one_of(*choices: str | int, default: Any = MISSING, tags: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"choices": choices, "tags": tags})


def sizes(length: int) -> Any:
    """A list of ``length`` sizes (an image's height, width, ...), each at least 1."""
    return field(default=MISSING, metadata={"length": length, "lo": 1, "hi": None})
