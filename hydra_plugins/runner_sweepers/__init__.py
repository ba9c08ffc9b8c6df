"""runner's Hydra sweeper plug-ins (Hydra finds sweepers only in the ``hydra_plugins`` namespace package)."""
