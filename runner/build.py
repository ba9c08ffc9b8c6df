"""The one module that reads the config groups: it builds the parts and runs the chosen mode."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError

log = logging.getLogger("runner")


def _quiet_tensorflow(verbose: bool) -> None:
    """Silences TensorFlow's C++ logs and the queue/compat deprecation warnings unless verbose.

    Some C++ libraries log to stderr while TensorFlow loads, before any log level applies, so stderr is parked in
    a temporary file during the import and replayed only if the import fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if not verbose and "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as parked:
            os.dup2(parked.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                parked.seek(0)
                sys.stderr.write(parked.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    import tensorflow as tf

    tf.get_logger().setLevel("INFO" if verbose else "ERROR")


def _params(node: DictConfig) -> dict:
    """A group's values as plain keyword arguments, without its registry name."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name")
    return params


def build_dataset(cfg: DictConfig):
    from runner.datasets import DATASETS

    return DATASETS.get(cfg.dataset.name)(**_params(cfg.dataset))


def build_parts(cfg: DictConfig, dataset=None):
    from runner.engine import Parts, shared_model
    from runner.hardware import place
    from runner.models import MODELS
    from runner.optim import OPTIMIZERS, SCHEDULES
    from runner.pipelines import PIPELINES
    from runner.trainers import TRAINERS

    dataset = dataset or build_dataset(cfg)
    dataset.prepare()
    for split in cfg.eval_splits + ["train"]:
        if dataset.num_examples(split) == 0:
            raise ConfigError(f"the {split} split of dataset {cfg.dataset.name} is empty")
    if cfg.batch_size > dataset.num_examples("train"):
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {dataset.num_examples('train')} "
                          f"training examples of dataset {cfg.dataset.name}")
    model_fn = MODELS.get(cfg.model.name)
    optimizer = _params(cfg.optimizer)
    base_lr = optimizer.pop("lr")
    schedule_fn, schedule = SCHEDULES.get(cfg.schedule.name), _params(cfg.schedule)
    optimizer_fn = OPTIMIZERS.get(cfg.optimizer.name)
    placement = place(**OmegaConf.to_container(cfg.hardware, resolve=True))
    trainer = cfg.trainer
    if trainer == "auto":
        trainer = "towers" if len(placement.devices) > 1 else "single"
    elif trainer == "single" and len(placement.devices) > 1:
        raise ConfigError(f"trainer=single runs on one device but hardware={cfg.hardware.name} has "
                          f"{len(placement.devices)}; use trainer=auto or trainer=towers")
    return Parts(
        dataset=dataset,
        pipeline=PIPELINES.get(cfg.pipeline.name)(dataset, seed=cfg.seed, **_params(cfg.pipeline)),
        model=shared_model(model_fn, dataset.num_classes, _params(cfg.model)),
        trainer=TRAINERS.get(trainer),
        make_lr=lambda step, steps_per_epoch: schedule_fn(base_lr, step, steps_per_epoch, **schedule),
        make_optimizer=lambda lr: optimizer_fn(lr, **optimizer),
        devices=placement.devices,
        variable_device=placement.variable_device,
        session_config=placement.session_config,
    )


def _describe(cfg: DictConfig, parts, run_dir: str) -> None:
    model = ", ".join(f"{k}={v}" for k, v in _params(cfg.model).items())
    log.info("Building: dataset=%s pipeline=%s model=%s(%s) batch_size=%d devices=%s trainer=%s run_dir=%s",
             cfg.dataset.name, cfg.pipeline.name, cfg.model.name, model, cfg.batch_size,
             ",".join(parts.devices), parts.trainer.__name__, run_dir)


def _saved_config(run_dir: str) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path} not found: run_dir={run_dir} is not a training run dir of runner")
    return OmegaConf.load(path)


def _given_on_command_line(key: str) -> bool:
    """Whether the command line set ``key`` (or chose it, for a group, or set one of its keys)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    keys = [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
    return any(k == key or k.startswith(key + ".") for k in keys)


def run(cfg: DictConfig, run_dir: str) -> dict | None:
    _quiet_tensorflow(cfg.verbose)
    if cfg.mode == "convert":
        from runner.datasets.records import ensure_records

        paths = ensure_records(build_dataset(cfg))
        for split, path in paths.items():
            log.info("%s: %s", split, path)
        return None
    if cfg.mode == "eval":
        from runner.evaluate import evaluate

        saved = _saved_config(run_dir)
        if _given_on_command_line("hardware"):  # evaluate on other devices than the run trained on
            saved.hardware = cfg.hardware
        parts = build_parts(saved)
        _describe(saved, parts, run_dir)
        decay = saved.get("moving_average_decay") if cfg.eval_moving_average else None
        splits = cfg.eval_splits if _given_on_command_line("eval_splits") else saved.eval_splits
        return evaluate(parts, run_dir, saved.batch_size, list(splits), moving_average_decay=decay,
                        once=cfg.eval_once, interval_secs=cfg.eval_interval_secs)
    if cfg.mode == "train":
        from runner.train import Settings, train

        parts = build_parts(cfg)
        _describe(cfg, parts, run_dir)
        settings = Settings(run_dir=run_dir, batch_size=cfg.batch_size, max_steps=cfg.max_steps, seed=cfg.seed,
                            log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                            keep_checkpoints=cfg.keep_checkpoints, eval_splits=list(cfg.eval_splits),
                            moving_average_decay=cfg.moving_average_decay,
                            eval_moving_average=cfg.eval_moving_average)
        return train(parts, settings, OmegaConf.to_container(cfg, resolve=True))
    raise ConfigError(f"mode={cfg.mode} is not available yet; use mode=train, eval or convert")
