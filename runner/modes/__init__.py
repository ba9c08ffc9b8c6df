"""The modes, one module each with one entry function ``run(cfg, run_dir)`` on a validated config: ``mode=NAME``
runs ``runner/modes/NAME.py`` (``eval``: evaluate.py), for each name of the schema's MODES.

A mode checks first what needs no TensorFlow (the run dir's lock, a resume, the data files), so those errors come
at once, and imports its TensorFlow stage after: importing this package loads no TensorFlow.
"""
from importlib import import_module

from runner.config.schema import MODES as NAMES

MODULES = {"eval": "evaluate"}  # a mode whose module has another name ("eval" would hide Python's builtin)
MODES = {name: import_module(f"runner.modes.{MODULES.get(name, name)}").run for name in NAMES}
