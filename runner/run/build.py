"""From the config to what the engine runs: the parts of a run (pipeline, model, trainer, optimizer, schedule,
devices) on a prepared dataset, and the run's settings as the schema's dataclass."""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.config.hydra import settings
from runner.core.system import cores, cores_given
from runner.datasets.base import Dataset
from runner.engine.hardware import Placement, place
from runner.engine.model import Parts, shared_model
from runner.engine.replicas import Replicas
from runner.models import MODELS
from runner.ops.precision import check_hardware, scaled
from runner.optim import OPTIMIZERS, SCHEDULES
from runner.pipelines import PIPELINES
from runner.pipelines.base import Shard
from runner.trainers import TRAINERS

log = logging.getLogger("runner")


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine: the launcher's ``n_jobs`` (joblib's convention:
    -1 all cores, -2 all but one, ...) when it runs jobs side by side here, else 1."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 1
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if n_jobs is None:  # one job at a time (the basic launcher), or each on its own machine (slurm, ray)
        return 1
    cores = os.cpu_count() or 1
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def placement(cfg: DictConfig, replicas: Replicas | None = None) -> Placement:
    """The devices and session config of the hardware group (runner.engine.hardware.place), with TensorFlow's
    thread pools divided among parallel sweep jobs, or sized to the CPUs given, unless set; a cluster worker's
    (``replicas``) sees only the ps tasks and itself."""
    hardware = OmegaConf.to_container(cfg.hardware, resolve=True)
    accepted = inspect.signature(place).parameters
    hardware = {k: v for k, v in hardware.items() if k in accepted}  # a cluster's own keys are not place's
    jobs, given = parallel_jobs(), cores_given()
    if jobs > 1 or given:
        share = max(1, cores() // jobs)
        for key in ("intra_op_threads", "inter_op_threads"):
            hardware[key] = hardware[key] or share
        said = f"{jobs} parallel jobs" if jobs > 1 else f"{given} CPU(s) given to this process"
        log.info("%s: TensorFlow thread pools of %d (intra) and %d (inter)%s", said, hardware["intra_op_threads"],
                 hardware["inter_op_threads"], " per job" if jobs > 1 else "")
    placed = place(**hardware)
    if replicas is not None:
        placed.session_config.device_filters.extend(["/job:ps", replicas.worker_device])
    return placed


def build_parts(cfg: DictConfig, dataset: Dataset, replicas: Replicas | None = None,
                placed: Placement | None = None) -> Parts:
    """The parts of a run on a prepared dataset (runner.run.data.prepared_dataset); with ``replicas`` those of a
    cluster worker, reading its shard of the training split (on ``placed``, the placement its server runs)."""
    run = settings(cfg)  # each group as its schema instance: a part is made from its own
    model_fn = MODELS.get(run.model.name)
    schedule_fn, optimizer_fn = SCHEDULES.get(run.schedule.name), OPTIMIZERS.get(run.optimizer.name)
    placed = placed or placement(cfg, replicas)
    check_hardware(cfg.hardware.precision, placed.devices)
    trainer = cfg.trainer  # validate() refused trainer=single on several devices
    if trainer == "auto":
        trainer = "towers" if len(placed.devices) > 1 else "single"
    towers, input_device, shard = placed.devices, "/cpu:0", Shard()
    if replicas is not None:  # this worker's devices; variables go to the ps tasks (runner.engine.graph)
        towers = [replicas.worker_device + d for d in towers]
        input_device = replicas.worker_device + "/cpu:0"
        shard = Shard(replicas.task_index, replicas.num_workers)
    return Parts(
        dataset=dataset,
        pipeline=PIPELINES.get(run.pipeline.name)(run.pipeline, dataset, seed=run.seed, shard=shard),
        model=shared_model(model_fn, dataset.num_classes, run.model, run.hardware.precision),
        trainer=TRAINERS.get(trainer),
        names={"pipeline": cfg.pipeline.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
               "trainer": trainer},
        make_lr=lambda step, steps_per_epoch: schedule_fn(run.schedule, run.optimizer.lr, step, steps_per_epoch),
        make_optimizer=lambda lr: scaled(optimizer_fn(run.optimizer, lr), run.hardware.precision),
        devices=towers,
        variable_device=placed.variable_device,
        session_config=placed.session_config,
        input_device=input_device,
        xla=cfg.hardware.xla,
        replicas=replicas,
    )


def describe(cfg: DictConfig, parts: Parts, run_dir: str) -> None:
    """The run's "Building:" line: what it is made of and where it writes."""
    model = ", ".join(f"{f.name}={getattr(cfg.model, f.name)}" for f in dataclasses.fields(settings(cfg).model)
                      if f.name != "name")
    log.info("Building: dataset=%s pipeline=%s model=%s(%s) batch_size=%d devices=%s trainer=%s run_dir=%s",
             cfg.dataset.name, cfg.pipeline.name, cfg.model.name, model, cfg.batch_size,
             ",".join(parts.devices), parts.names["trainer"], run_dir)
