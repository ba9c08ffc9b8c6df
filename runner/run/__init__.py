"""A validated config made into a run: its dataset (data.py), the checks that read the data (validate.py), the
parts built for the engine (build.py), the run dir (rundir.py, provenance.py) and a training or evaluation run of
it (runs.py). TensorFlow loads only when the parts are built."""
