"""Run dirs read back and kept findable, from the files a run leaves: every run under a folder listed (runs.py,
``python -m runner.records.runs``), two runs compared (diff.py, ``python -m runner.records.diff``), and each run
mirrored into MLflow while it runs and afterwards (tracking.py; track.py, ``python -m runner.records.track``)."""
