"""Sweeps: one dir per sweep, stopped as a whole and continued by a rerun (sweep.py); the report written when a
multirun ends (report.py) and its TensorBoard HParams (hparams.py). Nothing here imports TensorFlow."""
