"""Trainers: build the train op from a model, per-device batches and an optimizer. Each module registers in
TRAINERS."""
import importlib
import pkgutil

from runner.registry import Registry

TRAINERS: Registry = Registry("trainer")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
