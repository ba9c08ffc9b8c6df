"""What a command says beyond its config, passed down by the app (runner.cli.app reads it from Hydra once): the
overrides as typed and how many jobs of a sweep run side by side on this machine."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Invocation:
    """``overrides``: the command line's (recorded in history.jsonl and provenance.json, passed on to a local
    cluster's tasks, repeated in the commands that messages and tuned experiments give). ``parallel_jobs``: the
    sweep's jobs running at once here, which share TensorFlow's thread pools. A run made outside a command line
    (a test, a script) has neither."""

    overrides: tuple[str, ...] = ()
    parallel_jobs: int = 1
    # A search's trial (runner.sweeps.search): told each eval's step and results; raises Pruned to stop the run.
    after_eval: Callable[[int, dict], None] | None = None


ALONE = Invocation()
