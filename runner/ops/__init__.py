"""Graph-building helpers the parts and the engine share: training summaries (summaries.py) and the compute
precision (precision.py: cast getters, loss scaling)."""
