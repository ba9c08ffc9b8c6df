"""The graph-mode engine that runs the built parts: the training graph (graph.py), sessions (session.py) with the
loop's hooks (hooks.py, profile.py, progress.py), checkpoints, evals, the training and evaluation loops
(training.py, evaluation.py), devices (hardware.py, replicas.py) and where a process runs (topology.py). runner.run
hands it Parts, the loop's narrow settings (training.TrainSettings) and a Topology; runner.perf measures on top of
it."""
