"""The ground floor, which every layer may use and which imports nothing of runner's above it: errors and exit
statuses (errors.py), signals (signals.py), the parts' registries (registry.py), loading TensorFlow (tfload.py),
safe files (files.py), a process's CPUs (system.py), statistics (stats.py) and ending a process whose work is done
(closing.py)."""
