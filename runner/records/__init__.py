"""Run dirs read back and kept findable: every run under a folder listed (runs.py, ``python -m runner.runs``), two
runs compared (diff.py, ``python -m runner.diff``), and each run mirrored into MLflow while it runs and afterwards
(tracking.py; track.py, ``python -m runner.track``), from the files a run leaves."""
