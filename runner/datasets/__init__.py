"""Datasets: their files, formats, splits and preprocessing. Every module here registers itself in DATASETS.

They import TensorFlow inside the functions that use it: a dataset is made while the config is validated, and
its files are obtained and checked before TensorFlow loads (runner.run.data)."""
from runner.core.registry import Registry, import_modules

DATASETS: Registry = Registry("dataset")
import_modules(__name__, __path__)
