"""Datasets: their files, formats, splits and preprocessing. Every module here registers itself in DATASETS."""
import importlib
import pkgutil

from runner.registry import Registry

DATASETS: Registry = Registry("dataset")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
