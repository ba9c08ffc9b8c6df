"""The graph-mode engine that runs the built parts: the training graph (graph.py), sessions (session.py) with the
loop's hooks (hooks.py, profile.py, progress.py), checkpoints, evals, the training and evaluation loops
(training.py, evaluation.py) and devices (hardware.py, replicas.py). runner.run.build hands it Parts and the run's
settings (RunnerConfig); runner.perf measures on top of it."""
