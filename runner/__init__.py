"""runner: a declarative experiment runner for TensorFlow input pipelines and training setups."""
