"""Trainers: build the train op from a model, per-device batches and an optimizer. Each module registers in
TRAINERS."""
from runner.core.registry import Registry, import_modules

TRAINERS: Registry = Registry("trainer")
import_modules(__name__, __path__)
