"""``hardware.precision``: the type the model computes in, with float32 variables.

- ``fp32``: everything in float32.
- ``bf16`` / ``fp16``: the model's input (after float32 preprocessing) is cast to bfloat16 / float16, and each
  float32 variable is read through a cast (a custom getter), so variables, their gradients' updates, moving averages
  and checkpoints stay float32. The logits are cast back, so the softmax, the cross-entropy and the weight decay run
  in float32, as does the CNN's LRN (runner/models/lrn.py) between two casts.
- ``fp16`` also scales the loss dynamically (:func:`scaled`): gradients that would underflow in float16 are
  computed on ``loss x scale``; a step whose gradients overflow is skipped and the scale halved (it doubles after
  2,000 finite steps). The scale is the ``loss_scale`` summary.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import tensorflow as tf

from runner.core.system import cpu_flags
from runner.ops.summaries import scalar

v1 = tf.compat.v1
log = logging.getLogger("runner")
DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
_said: set = set()  # what was said once per process


def cast_getter(dtype: tf.DType) -> Callable:
    """A variable_scope custom getter: float32 variables are created (and stored) as float32 and read as ``dtype``."""

    def read_as(getter, name, *args, **kwargs):  # TensorFlow passes the next getter as ``getter``
        var = getter(name, *args, **kwargs)
        return tf.cast(var, dtype) if var.dtype.base_dtype == tf.float32 else var

    return read_as


def in_precision(fn: Callable[..., tf.Tensor], precision: str) -> Callable[..., tf.Tensor]:
    """A model function that computes in ``precision``: images cast at its input, float32 variables read as the
    compute type, logits returned as float32."""
    dtype = DTYPES[precision]
    if dtype == tf.float32:
        return fn

    def model(images: tf.Tensor, *args, **kwargs) -> tf.Tensor:
        with v1.variable_scope(v1.get_variable_scope(), custom_getter=cast_getter(dtype)):
            logits = fn(tf.cast(images, dtype), *args, **kwargs)
        return tf.cast(logits, tf.float32)

    return model


def scaled(optimizer: v1.train.Optimizer, precision: str) -> v1.train.Optimizer:
    """fp16: the optimizer with dynamic loss scaling (TensorFlow's MixedPrecisionLossScaleOptimizer), its scale a
    summary; other precisions need none."""
    if precision != "fp16":
        return optimizer
    optimizer = v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, "dynamic")
    scalar("loss_scale", optimizer._loss_scale())  # the scale of this step (its LossScale object)
    return optimizer


def cpu_has_bf16() -> bool | None:
    """Whether the CPU has bfloat16 instructions (AVX512_BF16 or AMX-BF16); None where /proc/cpuinfo can't tell."""
    flags = cpu_flags()
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & flags)


def check_hardware(precision: str, devices: list[str]) -> None:
    """Says once when the chosen precision will be slow on these devices: bfloat16 on a CPU without bfloat16
    instructions runs emulated (measured 10x slower than float32 on the CIFAR-10 model on an AVX2 CPU)."""
    on_cpu = any("cpu" in d.lower() for d in devices)
    if precision == "bf16" and on_cpu and cpu_has_bf16() is False and "bf16-cpu" not in _said:
        _said.add("bf16-cpu")
        log.warning("hardware.precision=bf16: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16), so "
                    "TensorFlow emulates bfloat16 math and the run is slower than fp32 here; bf16 pays on CPUs "
                    "with them (Cooper Lake, Sapphire Rapids and later, Zen 4 and later) and on GPUs")
