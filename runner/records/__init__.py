"""Run dirs read back after the fact: every run under a folder listed (listing.py, ``python -m runner.runs``) and two
runs compared (diff.py, ``python -m runner.diff``), from the files a run leaves; no server, no TensorFlow."""
