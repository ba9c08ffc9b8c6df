"""Run dirs read back after the fact: every run under a folder listed (runs.py, ``python -m runner.records.runs``)
and two runs compared (diff.py, ``python -m runner.records.diff``), from the files a run leaves; no server, no
TensorFlow."""
