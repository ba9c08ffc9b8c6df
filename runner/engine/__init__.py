"""The graph-mode engine that runs the built parts: the training graph (graph.py), sessions (session.py) with the
loop's hooks (hooks.py, profile.py), checkpoints, evals, the training and evaluation loops (training.py,
evaluation.py), the bench's measurements (measure.py, bench.py) and devices (hardware.py, replicas.py).
runner.build hands it Parts and the run's settings (RunnerConfig); the bench and tune read their own sections of it."""
