"""Measuring a built run, above the engine that trains it: windows against the model-only bound around them
(measure.py), mode=bench (bench.py) with its stage attribution (stages.py), mode=tune's search (search.py), and
``make bench-compare`` against Keras (compare.py, keras_cifar_fit.py)."""
