"""One small registry class: a name -> part map that refuses duplicates, lists known names on a miss, and gives each
part its name; and the loader that registers every module of a part package."""
from __future__ import annotations

import importlib
import pkgutil
import types
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from runner.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to parts (pipelines, models, trainers, ...).

    The name is written once, where the part registers: ``@PIPELINES.register("queue")`` sets ``Queue.name``. Its
    YAML (``conf/pipeline/queue.yaml``, ``name: queue``) and its schema (``SCHEMAS["pipeline"]["queue"]`` in
    runner.config.schema) use the same name, which tests hold together (test_registry.py, test_config.py).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            if isinstance(obj, (type, types.FunctionType)):  # a part's class or function carries its name
                setattr(obj, "name", name)  # noqa: B010 (a class or a function alike)
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


def import_modules(package: str, path: Iterable[str]) -> None:
    """Imports every module of a part package, so that each registers its parts (call it from the package's
    ``__init__`` with ``__name__, __path__``)."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
