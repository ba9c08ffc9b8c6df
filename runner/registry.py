"""One small registry class: a name -> object map that refuses duplicates and lists known names on a miss."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from runner.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to parts (pipelines, models, trainers, ...).

    The name is the same end to end: ``conf/pipeline/queue.yaml`` sets ``name: queue``,
    ``runner/pipelines/queue.py`` calls ``PIPELINES.register("queue")``.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)
