"""A composed config validated: every key against its schema and the rules between keys (runner.config.checks),
then the dataset it names against the model, the pipelines and the mode. Called once per run, before its run dir is
made (runner.cli.app); imports no TensorFlow (a dataset is made, which reads no data)."""
from __future__ import annotations

import glob
from pathlib import Path

from omegaconf import DictConfig

from runner.config.checks import check_config, group_schema, measured_pipelines
from runner.config.datasets import OwnDatasetConfig
from runner.config.schema import SCHEMAS
from runner.core.errors import ConfigError, DataError
from runner.run.data import build_dataset


def validate(cfg: DictConfig) -> None:
    """Raises ConfigError naming the key and what is allowed."""
    check_config(cfg)
    check_files(cfg)
    check_dataset(cfg, measured_pipelines(cfg))
    check_gpus(cfg)


def check_files(cfg: DictConfig) -> None:
    """A user's own data: dataset.root must be a folder (said at once, before TensorFlow loads)."""
    if issubclass(group_schema(cfg, "dataset"), OwnDatasetConfig):
        root = Path(cfg.dataset.root).expanduser()
        if not root.is_dir():
            what = "a file" if root.exists() else "not found"
            raise ConfigError(f"dataset.root={cfg.dataset.root}: {what}; point it at the folder of the dataset's "
                              f"files")


def check_gpus(cfg: DictConfig) -> None:
    """hardware.strict with GPUs asked for, on a machine with no GPU device at all: said at once (TensorFlow would
    probe CUDA for half a minute to find none). Where a GPU device exists, TensorFlow counts them as the run starts."""
    hardware = cfg.hardware
    if hardware.device_type == "gpu" and hardware.strict and not glob.glob("/dev/nvidia[0-9]*"):
        raise ConfigError(f"hardware={hardware.name} asks for {hardware.num_devices} GPU(s) but this machine has 0 "
                          f"(no /dev/nvidia* device); set hardware.strict=false to run its towers on the CPU")


def check_dataset(cfg: DictConfig, pipelines: list[str]) -> None:
    """The dataset against the model, the pipelines and the mode. The dataset object is made (which reads no
    data); what only its files can tell (a CSV's columns, an IDX file's shape) is checked when a run reads them."""
    dataset = build_dataset(cfg)
    name = cfg.dataset.name
    channels = group_schema(cfg, "model").channels
    if channels and not dataset.images:
        try:
            values = f" of {dataset.raw_shape[0]} values"
        except DataError:
            values = ""
        raise ConfigError(f"model={cfg.model.name} takes images but dataset={name} gives feature vectors{values}; "
                          f"use model=mlp")
    try:
        shape = dataset.output_shape
        if channels and shape[-1] != channels:
            raise ConfigError(f"model={cfg.model.name} takes {channels}-channel images but dataset={name} has "
                              f"{shape[-1]}-channel images of shape {list(shape)}; choose model=mlp or a dataset "
                              f"of {channels}-channel images")
        if "validation" in cfg.eval_splits and not dataset.has_validation():
            raise ConfigError("eval_splits contains 'validation' but dataset.validation_size=0 makes none; set "
                              "dataset.validation_size or leave validation out of eval_splits")
    except DataError:
        pass  # said again, with what to do, when the run reads the files
    reads_files = [p for p in pipelines if SCHEMAS["pipeline"][p].reads_files]
    if not dataset.files_hold_validation and cfg.dataset.validation_size and reads_files:
        raise ConfigError(f"pipeline={reads_files[0]} reads whole {dataset.kind} files, which hold no validation "
                          f"split: use dataset.validation_size=0 with it, or pipeline=feed_dict or preloaded")
    if cfg.mode == "convert" and not dataset.convertible:
        raise ConfigError(f"mode=convert writes TFRecords that the queue and tf_data pipelines read; dataset={name} "
                          f"is read from its own {dataset.kind} files as they are")
