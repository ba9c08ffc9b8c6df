"""The run's dataset, made from the config and made ready: its files obtained (downloaded, generated or converted),
read and checked against the config, then TensorFlow loaded. What can fail here fails before TensorFlow loads
where the dataset needs none to read its files, so those errors come at once."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from runner.config import packages
from runner.core.errors import ConfigError, DataError
from runner.core.tfload import load_tensorflow
from runner.datasets import DATASETS
from runner.datasets.base import Dataset


def build_dataset(cfg: DictConfig) -> Dataset:
    """The dataset the config names, made from its schema instance; making it reads no data."""
    if packages.owner("dataset", cfg.dataset.name):  # an installed package's: its modules register it
        packages.import_parts()
    return DATASETS.get(cfg.dataset.name)(OmegaConf.to_object(cfg.dataset))


def prepared_dataset(cfg: DictConfig) -> Dataset:
    """The dataset with its files obtained and read, every split the run reads holding examples and the batch
    no larger than the training split; TensorFlow is loaded (quietly) once they are, or first where the dataset
    reads its files with TensorFlow's ops."""
    dataset = build_dataset(cfg)
    if dataset.needs_tensorflow:
        load_tensorflow(cfg.verbose, cfg.hardware.xla)
    dataset.prepare()
    for split in [*cfg.eval_splits, "train"]:
        if dataset.num_examples(split) == 0:
            raise DataError(f"the {split} split of dataset {cfg.dataset.name} in {dataset.location} has no examples")
    if cfg.batch_size > dataset.num_examples("train"):
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {dataset.num_examples('train')} "
                          f"training examples of dataset {cfg.dataset.name}")
    load_tensorflow(cfg.verbose, cfg.hardware.xla)
    return dataset
