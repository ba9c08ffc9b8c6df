"""runner parts from a package of their own: model=keras_mlp (tf_keras layers) and optimizer=rmsprop.

This module is what the entry point names; runner reads it while it composes a config, so it imports no
TensorFlow: the schemas are plain dataclasses, and the modules that build the parts are imported when a run builds
them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from omegaconf import MISSING

from runner.config.packages import Package
from runner.config.schema import OptimizerConfig


@dataclass
class KerasMlpConfig:
    channels: ClassVar[int | None] = None  # takes any image (flattened)
    name: str = MISSING
    hidden: list[int] = MISSING  # units of each hidden Dense layer (ReLU)
    dropout: float = MISSING  # dropout rate after each hidden layer, while training
    weight_decay: float = MISSING  # L2 on the hidden layers' kernels, added to the loss
    batch_norm: bool = MISSING  # batch normalization after each hidden Dense layer


@dataclass
class RmspropConfig(OptimizerConfig):
    decay: float = MISSING  # of the moving average of squared gradients
    momentum: float = MISSING
    epsilon: float = MISSING


PARTS = Package(
    conf=Path(__file__).parent / "conf",
    schemas={"model": {"keras_mlp": KerasMlpConfig}, "optimizer": {"rmsprop": RmspropConfig}},
    modules=("keras_parts.models", "keras_parts.optimizers"),
)
