"""The config: its types (schema.py, with the dataset group's in datasets.py and the field helpers in fields.py),
Hydra's side of it (hydra.py: the ConfigStore, composing, typing a saved config) and the checks of a composed
config (checks.py). Nothing here imports TensorFlow. Import from the modules: this face imports nothing, so that the
parts can read schema.py without loading the checks."""
