"""runner's Hydra launcher plug-ins (Hydra finds launchers only in the ``hydra_plugins`` namespace package)."""
