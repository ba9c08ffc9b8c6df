"""Datasets: their files, formats, splits and preprocessing. Every module here registers itself in DATASETS."""
from runner.registry import Registry, import_modules

DATASETS: Registry = Registry("dataset")
import_modules(__name__, __path__)
