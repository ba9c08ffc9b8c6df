"""From the config to what the engine runs: the parts of a run (pipeline, model, trainer, optimizer, schedule,
devices) on a prepared dataset, and the run's settings as the schema's dataclass."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging

from runner.config import packages
from runner.config.schema import HardwareConfig, RunnerConfig
from runner.core.system import cores, cores_given
from runner.datasets.base import Dataset
from runner.engine.hardware import Placement, place
from runner.engine.model import Parts, shared_model
from runner.engine.replicas import Replicas
from runner.engine.topology import Topology
from runner.models import MODELS
from runner.ops.precision import check_hardware, scaled
from runner.optim import OPTIMIZERS, SCHEDULES
from runner.pipelines import PIPELINES
from runner.trainers import TRAINERS

log = logging.getLogger("runner")


@functools.cache
def _say_once(line: str) -> None:
    """A line said once per process (mode=bench and mode=tune place every pipeline they build)."""
    log.info(line)


def placement(hardware: HardwareConfig, parallel_jobs: int = 1, replicas: Replicas | None = None) -> Placement:
    """The devices and session config of the hardware group (runner.engine.hardware.place), with TensorFlow's
    thread pools divided among ``parallel_jobs`` sweep jobs, or sized to the CPUs given, unless set; a cluster
    worker's (``replicas``) sees only the ps tasks and itself."""
    accepted = inspect.signature(place).parameters  # a cluster's own keys are not place's
    values = {f.name: getattr(hardware, f.name) for f in dataclasses.fields(hardware) if f.name in accepted}
    jobs, given = parallel_jobs, cores_given()
    if jobs > 1 or given:
        share = max(1, cores() // jobs)
        for key in ("intra_op_threads", "inter_op_threads"):
            values[key] = values[key] or share
        said = f"{jobs} parallel jobs" if jobs > 1 else f"{given} CPU(s) given to this process"
        _say_once(f"{said}: TensorFlow thread pools of {values['intra_op_threads']} (intra) and "
                  f"{values['inter_op_threads']} (inter){' per job' if jobs > 1 else ''}")
    placed = place(**values)
    if replicas is not None:
        placed.session_config.device_filters.extend(["/job:ps", replicas.worker_device])
    return placed


def deterministic_ops() -> None:
    """deterministic=true: TensorFlow's op determinism (each op's deterministic kernel, or an error naming an op that
    has none), for the rest of this process; the config's checks keep the input order fixed."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    _say_once("deterministic=true: TensorFlow's op determinism is on (runs of one seed are equal bit for bit)")


def build_parts(run: RunnerConfig, dataset: Dataset, topology: Topology | None = None) -> Parts:
    """The parts of a run (runner.config.hydra.settings: each group its schema's instance, a part made from its own)
    on a prepared dataset (runner.run.data.prepared_dataset), where ``topology`` says (this process alone by
    default; a cluster worker's reads its shard of the training split)."""
    packages.import_parts()  # installed packages register their parts
    model_fn = MODELS.get(run.model.name)
    schedule_fn, optimizer_fn = SCHEDULES.get(run.schedule.name), OPTIMIZERS.get(run.optimizer.name)
    if run.deterministic:
        deterministic_ops()
    topology = topology or Topology(placement(run.hardware))
    placed = topology.placement
    check_hardware(run.hardware.precision, placed.devices)
    trainer = run.trainer  # validate() refused trainer=single on several devices
    if trainer == "auto":
        trainer = "towers" if len(placed.devices) > 1 else "single"
    return Parts(
        dataset=dataset,
        pipeline=PIPELINES.get(run.pipeline.name)(run.pipeline, dataset, seed=run.seed, shard=topology.shard),
        model=shared_model(model_fn, dataset.num_classes, run.model, run.hardware.precision),
        trainer=TRAINERS.get(trainer),
        names={"pipeline": run.pipeline.name, "dataset": run.dataset.name, "model": run.model.name,
               "trainer": trainer},
        make_lr=lambda step, steps_per_epoch: schedule_fn(run.schedule, run.optimizer.lr, step, steps_per_epoch),
        make_optimizer=lambda lr: scaled(optimizer_fn(run.optimizer, lr), run.hardware.precision),
        devices=topology.towers,  # a worker's variables go to the ps tasks (runner.engine.graph)
        variable_device=placed.variable_device,
        session_config=placed.session_config,
        input_device=topology.input_device,
        xla=run.hardware.xla,
        replicas=topology.replicas,
    )


def describe(run: RunnerConfig, parts: Parts, run_dir: str) -> None:
    """The run's "Building:" line: what it is made of and where it writes."""
    fields = [f.name for f in dataclasses.fields(run.model) if f.name != "name"]
    model = ", ".join(f"{name}={getattr(run.model, name)}" for name in fields)
    service = getattr(run.pipeline, "service", None)  # the tf_data pipeline's (runner.distributed.data_service)
    pipeline = run.pipeline.name + (f"(training batches read, decoded, preprocessed and batched by the tf.data "
                                    f"service at {service})" if service else "")
    log.info("Building: dataset=%s pipeline=%s model=%s(%s) batch_size=%d devices=%s trainer=%s run_dir=%s",
             run.dataset.name, pipeline, run.model.name, model, run.batch_size,
             ",".join(parts.devices), parts.names["trainer"], run_dir)
