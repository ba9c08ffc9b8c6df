"""The modes, one module each with one entry function ``run(cfg, run_dir)`` on a validated config.

A mode checks first what needs no TensorFlow (the run dir's lock, a resume, the data files), so those errors come
at once, and imports its TensorFlow stage after: importing this package loads no TensorFlow.
"""
from runner.modes import bench, convert, evaluate, train, tune

MODES = {"train": train.run, "eval": evaluate.run, "bench": bench.run, "convert": convert.run, "tune": tune.run}
