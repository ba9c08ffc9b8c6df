"""Input pipelines: four ways to get batches into the same train op. Every module here registers in PIPELINES."""
import importlib
import pkgutil

from runner.registry import Registry

PIPELINES: Registry = Registry("pipeline")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
