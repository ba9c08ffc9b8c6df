"""Devices for a run from the hardware group: one tower per device, variables on the variable device.
``hardware=auto`` (the default) is one GPU tower when TensorFlow sees a GPU, else the CPU; ``hardware.xla`` turns on
XLA auto-clustering in the session.

CPU towers run on logical CPU devices of the session (ConfigProto device_count), so several towers can be run and
tested on any machine. When fewer GPUs exist than asked, all towers go on the devices that exist (the CPU when
there is no GPU), with one warning; ``hardware.strict=true`` makes that an error.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import tensorflow as tf

from runner.core.errors import ConfigError

log = logging.getLogger("runner")
_said: set[tuple[str, str]] = set()  # the auto choice is said once per process


@dataclass
class Placement:
    devices: list[str]  # one per tower
    variable_device: str
    session_config: tf.compat.v1.ConfigProto


def place(name: str, device_type: str, num_devices: int, variable_device: str, intra_op_threads: int,
          inter_op_threads: int, soft_placement: bool, strict: bool, xla: bool) -> Placement:
    cpus = 1
    if device_type == "auto":  # one GPU tower when TensorFlow sees a GPU (the tutorial's placement), else the CPU
        device_type = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        if (name, device_type) not in _said:
            _said.add((name, device_type))
            log.info("hardware=%s: %s", name, "a GPU is visible, training on /gpu:0" if device_type == "gpu" else
                     "no GPU is visible, training on the CPU")
    if device_type == "cpu":
        devices = [f"/cpu:{i}" for i in range(num_devices)]
        cpus = num_devices
    else:
        gpus = len(tf.config.list_physical_devices("GPU"))
        if gpus >= num_devices:
            devices = [f"/gpu:{i}" for i in range(num_devices)]
        else:
            where = f"the {gpus} GPU(s) that exist" if gpus else "the CPU"
            message = f"hardware={name} asks for {num_devices} GPU(s) but this machine has {gpus}"
            if strict:
                raise ConfigError(f"{message}; set hardware.strict=false to run its towers on {where}")
            log.warning("%s: running its %d tower(s) on %s", message, num_devices, where)
            devices = [f"/gpu:{i % gpus}" if gpus else "/cpu:0" for i in range(num_devices)]
    if variable_device == "gpu" and devices[0].startswith("/gpu"):
        variables = "/gpu:0"
    else:
        variables = "/cpu:0"
    config = tf.compat.v1.ConfigProto(device_count={"CPU": cpus}, allow_soft_placement=soft_placement,
                                      intra_op_parallelism_threads=intra_op_threads,
                                      inter_op_parallelism_threads=inter_op_threads)
    if xla:  # XLA auto-clustering: what XLA compiles runs compiled, the rest as usual
        config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    return Placement(devices, variables, config)
