"""Input pipelines: four ways to get batches into the same train op. Every module here registers in PIPELINES."""
from runner.core.registry import Registry, import_modules

PIPELINES: Registry = Registry("pipeline")
import_modules(__name__, __path__)
