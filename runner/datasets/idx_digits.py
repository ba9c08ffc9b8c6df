"""MNIST-format datasets: four IDX gz files, 28x28 grey digits, a validation split taken off the training set."""
from __future__ import annotations

from runner.datasets.idx import KEYS, IdxFiles

FILES = dict(zip(KEYS, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz")))


class IdxDigits(IdxFiles):
    """Base of ``mnist`` and ``digits``: subclasses only say how missing files are obtained (:meth:`fetch`)."""

    kind = "MNIST"
    num_classes = 10
    names = FILES
    raw_shape = (28, 28, 1)  # uint8
    raw_dtype = "uint8"
