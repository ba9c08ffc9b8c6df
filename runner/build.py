"""The one module that reads the config groups: it builds the parts and runs the chosen mode."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf, open_dict

from runner import rundir
from runner.config import compose_group, validate
from runner.config import registered as _registered
from runner.errors import ConfigError, DataError, RunnerError, TrainingError
from runner.tfload import load_tensorflow

log = logging.getLogger("runner")


def _params(node: DictConfig) -> dict:
    """A group's values as plain keyword arguments, without its registry name."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name")
    return params


def build_dataset(cfg: DictConfig):
    from runner.datasets import DATASETS

    return DATASETS.get(cfg.dataset.name)(**_params(cfg.dataset))


def _parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine: the launcher's ``n_jobs`` (joblib's convention:
    -1 all cores, -2 all but one, ...) when it runs jobs side by side here, else 1."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 1
    n = HydraConfig.get().launcher.get("n_jobs")
    if n is None:  # one job at a time (the basic launcher), or each on its own machine (slurm, ray)
        return 1
    cores = os.cpu_count() or 1
    return max(1, cores + 1 + n if n < 0 else n)


def _hardware(cfg: DictConfig) -> dict:
    """The hardware group as the arguments of runner.hardware.place, with thread pools divided among parallel
    sweep jobs unless set."""
    import inspect

    from runner.hardware import place

    hw = OmegaConf.to_container(cfg.hardware, resolve=True)
    hw = {k: v for k, v in hw.items() if k in inspect.signature(place).parameters}  # a cluster's keys are not
    jobs, given = _parallel_jobs(), _cores_given()
    if jobs > 1 or given:
        share = max(1, (given or os.cpu_count() or 1) // jobs)
        for key in ("intra_op_threads", "inter_op_threads"):
            hw[key] = hw[key] or share
        said = f"{jobs} parallel jobs" if jobs > 1 else f"{given} CPU(s) given to this process"
        log.info("%s: TensorFlow thread pools of %d (intra) and %d (inter)%s", said, hw["intra_op_threads"],
                 hw["inter_op_threads"], " per job" if jobs > 1 else "")
    return hw


def _cores_given() -> int | None:
    """The CPUs this process was given, when fewer than the machine's: a SLURM job's ``--cpus-per-task``, or a CPU
    affinity mask (taskset, cgroups). TensorFlow would otherwise size its thread pools to the whole machine."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return n if n < (os.cpu_count() or n) else None


def build_parts(cfg: DictConfig, dataset, replicas=None):
    """The parts of a run on a prepared dataset (see :func:`_prepared`); with ``replicas``
    (:class:`runner.cluster.Replicas`) those of a cluster worker, reading its shard of the training split."""
    from runner.engine import Parts, shared_model
    from runner.precision import check_hardware, scaled
    from runner.hardware import place
    from runner.pipelines.base import Shard
    from runner.models import MODELS
    from runner.optim import OPTIMIZERS, SCHEDULES
    from runner.pipelines import PIPELINES
    from runner.trainers import TRAINERS

    model_fn = MODELS.get(cfg.model.name)
    optimizer = _params(cfg.optimizer)
    base_lr = optimizer.pop("lr")
    schedule_fn, schedule = SCHEDULES.get(cfg.schedule.name), _params(cfg.schedule)
    optimizer_fn = OPTIMIZERS.get(cfg.optimizer.name)
    placement = place(**_hardware(cfg))
    check_hardware(cfg.hardware.precision, placement.devices)
    trainer = cfg.trainer  # validate() refused trainer=single on several devices
    if trainer == "auto":
        trainer = "towers" if len(placement.devices) > 1 else "single"
    devices, input_device, shard = placement.devices, "/cpu:0", Shard()
    if replicas is not None:  # this worker's devices; variables go to the ps tasks (runner.graph)
        devices = [replicas.worker_device + d for d in devices]
        input_device = replicas.worker_device + "/cpu:0"
        shard = Shard(replicas.task_index, replicas.num_workers)
        placement.session_config.device_filters.extend(["/job:ps", replicas.worker_device])
    return Parts(
        dataset=dataset,
        pipeline=PIPELINES.get(cfg.pipeline.name)(dataset, seed=cfg.seed, shard=shard, **_params(cfg.pipeline)),
        model=shared_model(model_fn, dataset.num_classes, _params(cfg.model), cfg.hardware.precision),
        trainer=TRAINERS.get(trainer),
        names={"pipeline": cfg.pipeline.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
               "trainer": trainer},
        make_lr=lambda step, steps_per_epoch: schedule_fn(base_lr, step, steps_per_epoch, **schedule),
        make_optimizer=lambda lr: scaled(optimizer_fn(lr, **optimizer), cfg.hardware.precision),
        devices=devices,
        variable_device=placement.variable_device,
        session_config=placement.session_config,
        input_device=input_device,
        xla=cfg.hardware.xla,
        replicas=replicas,
    )


def _with_pipeline(cfg: DictConfig, name: str, precision: str | None = None) -> DictConfig:
    """cfg with pipeline ``name`` (the chosen pipeline keeps its overrides, others are composed by Hydra) and
    hardware.precision ``precision`` (None: cfg's)."""
    if name == cfg.pipeline.name and precision in (None, cfg.hardware.precision):
        return cfg
    copy = cfg.copy()
    with open_dict(copy):
        if name != cfg.pipeline.name:
            copy.pipeline = compose_group("pipeline", name)
        if precision is not None:
            copy.hardware.precision = precision
    validate(copy)
    return copy


def _describe(cfg: DictConfig, parts, run_dir: str) -> None:
    model = ", ".join(f"{k}={v}" for k, v in _params(cfg.model).items())
    log.info("Building: dataset=%s pipeline=%s model=%s(%s) batch_size=%d devices=%s trainer=%s run_dir=%s",
             cfg.dataset.name, cfg.pipeline.name, cfg.model.name, model, cfg.batch_size,
             ",".join(parts.devices), parts.names["trainer"], run_dir)


def _objective(summary: dict, path: str) -> float:
    """The number at a dotted path of summary.json (for sweepers that optimize one value)."""
    value = summary
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ConfigError(f"sweep_objective={path}: summary.json has no {key!r}; try final_precision.test or "
                              f"examples_per_sec")
        value = value[key]
    return float(value)


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@contextlib.contextmanager
def _naming_damaged_records(dataset) -> Iterator[None]:
    """An error while reading records: find the damaged file (and record) and say what to do."""
    try:
        yield
    except RunnerError as err:  # a read error, or an op that refused a record (a label out of range, a bad image)
        if isinstance(err, (ConfigError, TrainingError)):
            raise
        damage = dataset.damaged_records()
        if not damage:
            raise
        if not damage.cache:
            raise DataError(f"{damage.where}: {damage.problem}; fix or remove it") from None
        dataset_args = " ".join(o for o in _overrides() if o.lstrip("+~").startswith("dataset"))
        raise DataError(f"{damage.where}: {damage.problem}. Rebuild the records with: python -m runner mode=convert "
                        f"{dataset_args}".rstrip() + f" (or delete {Path(damage.where).parent})") from None


def _xla_on_cpu(cfg: DictConfig) -> None:
    """hardware.xla: on the CPU, XLA's auto-clustering also needs TF_XLA_FLAGS=--tf_xla_cpu_global_jit, which
    TensorFlow reads when it loads (so a process that loaded it already clusters for GPUs only)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if cfg.hardware.get("xla") and "--tf_xla_cpu_global_jit" not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_cpu_global_jit".strip()


def run(cfg: DictConfig, run_dir: str) -> dict | None:
    """Runs cfg.mode. What can fail without TensorFlow (the run dir, a resume, the data files) is checked before it
    loads, so those errors come at once."""
    _xla_on_cpu(cfg)
    if cfg.mode == "eval":
        cfg = rundir.eval_config(run_dir, cfg, _overrides())
        validate(cfg)  # the run's config with this evaluation's choices, checked like a run's
    if cfg.mode == "train" and cfg.hardware.name == "local_cluster":
        from runner.local_cluster import launch

        with rundir.lock(run_dir):
            changed = rundir.check_resume(run_dir, cfg)
            dataset = _prepared(cfg)  # the data once, here: the tasks find it ready (and a data error comes once)
            _record_start(cfg, run_dir, dataset, changed, devices=[f"local_cluster: {cfg.hardware.workers} worker(s), "
                                                          f"{cfg.hardware.ps} ps"])
            summary = launch(cfg, run_dir, _overrides())
        return _objective(summary, cfg.sweep_objective) if cfg.sweep_objective and summary else summary
    if cfg.mode == "train" and cfg.hardware.name == "cluster":
        return _cluster_task(cfg, run_dir)
    if cfg.mode == "train":
        with rundir.lock(run_dir):
            changed = rundir.check_resume(run_dir, cfg)
            return _train(cfg, run_dir, _prepared(cfg), changed)
    dataset = _prepared(cfg)
    if cfg.mode == "convert":
        for split, path in dataset.convert().items():
            log.info("%s: %s", split, path)
        return None
    if cfg.mode == "eval":
        return _evaluate(cfg, run_dir, dataset, once=cfg.eval_once)
    from runner.bench import BenchSettings, bench

    names = list(cfg.bench.pipelines or _registered("pipelines"))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(batch_size=cfg.batch_size, warmup_steps=cfg.bench.warmup_steps,
                             windows=cfg.bench.windows, steps_per_window=cfg.bench.steps_per_window,
                             seed=cfg.seed, moving_average_decay=cfg.moving_average_decay,
                             training_run=cfg.bench.training_run, summary_every=cfg.summary_every)
    precisions = list(cfg.bench.precisions or [cfg.hardware.precision])
    first = build_parts(_with_pipeline(cfg, names[0], precisions[0]), dataset)
    _describe(cfg, first, run_dir)

    def make_parts(name: str, precision: str):
        same = (name, precision) == (names[0], precisions[0])
        return first if same else build_parts(_with_pipeline(cfg, name, precision), dataset)

    with _naming_damaged_records(dataset):
        return bench(make_parts, names, precisions, settings, run_dir, OmegaConf.to_container(cfg, resolve=True))


def _evaluate(cfg: DictConfig, run_dir: str, dataset, once: bool, until_step: int | None = None) -> dict | None:
    from runner.evaluate import evaluate

    parts = build_parts(cfg, dataset)
    _describe(cfg, parts, run_dir)
    decay = cfg.get("moving_average_decay") if cfg.eval_moving_average else None
    with _naming_damaged_records(dataset):
        return evaluate(parts, run_dir, cfg.batch_size, list(cfg.eval_splits), moving_average_decay=decay,
                        once=once, interval_secs=cfg.eval_interval_secs, until_step=until_step)


def _prepared(cfg: DictConfig):
    """The dataset with its files obtained, read and checked against the config, then TensorFlow loaded (quietly)."""
    dataset = build_dataset(cfg)
    if dataset.needs_tensorflow:  # it reads its files with TensorFlow's ops
        load_tensorflow(cfg.verbose)
    dataset.prepare()
    for split in [*cfg.eval_splits, "train"]:
        if dataset.num_examples(split) == 0:
            raise DataError(f"the {split} split of dataset {cfg.dataset.name} in {dataset.location} has no examples")
    if cfg.batch_size > dataset.num_examples("train"):
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {dataset.num_examples('train')} "
                          f"training examples of dataset {cfg.dataset.name}")
    load_tensorflow(cfg.verbose)
    return dataset


def _record_start(cfg: DictConfig, run_dir: str, dataset, changed: dict, devices: list[str]) -> None:
    """Provenance of a new run (a rerun's stays), its labels (labels.json: label id -> class name) and a line in
    history.jsonl."""
    from runner import provenance
    from runner.datasets.files import write_json

    resuming = rundir.has_checkpoints(run_dir)
    if not resuming:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(run_dir) / "labels.json", dict(enumerate(dataset.class_names)))
        provenance.write(run_dir, config=OmegaConf.to_container(cfg, resolve=True), overrides=_overrides(),
                         devices=devices, seed=cfg.seed)
    rundir.record(run_dir, event="resume" if resuming else "start", overrides=_overrides(), changed=changed,
                  forced=bool(cfg.force_resume and changed))


def _train(cfg: DictConfig, run_dir: str, dataset, changed: dict | None, replicas=None, make_task=None
           ) -> dict | float | None:
    """Trains; ``changed`` is None in a cluster task that does not own the run dir (it records nothing)."""
    from runner.train import Settings, train

    parts = build_parts(cfg, dataset, replicas)
    _describe(cfg, parts, run_dir)
    if changed is not None:
        _record_start(cfg, run_dir, dataset, changed, parts.devices)
    settings = Settings(run_dir=run_dir, batch_size=cfg.batch_size, max_steps=cfg.max_steps, seed=cfg.seed,
                        log_every=cfg.log_every, summary_every=cfg.summary_every,
                        checkpoint_every=cfg.checkpoint_every,
                        keep_checkpoints=cfg.keep_checkpoints, eval_splits=list(cfg.eval_splits),
                        moving_average_decay=cfg.moving_average_decay,
                        eval_moving_average=cfg.eval_moving_average, progress=cfg.progress,
                        log_style=cfg.log_style, profile=tuple(cfg.profile) if cfg.profile else None)
    with _naming_damaged_records(dataset):
        resolved = OmegaConf.to_container(cfg, resolve=True)
        if make_task is None:
            summary = train(parts, settings, resolved)
        else:  # a cluster worker: its server needs the parts' session config
            summary = train(parts, settings, resolved, task=make_task(parts))
    if summary is None:
        return None
    return _objective(summary, cfg.sweep_objective) if cfg.sweep_objective else summary


def _cluster_task(cfg: DictConfig, run_dir: str) -> dict | float | None:
    """One task of a cluster, by its role: a ps serves, a worker trains (the chief owning the run dir), an evaluator
    evaluates the chief's checkpoints as they appear until the last one."""
    from runner import cluster

    hw = cfg.hardware
    role, index = cluster.role_from_env(hw.ps, hw.resolver)
    if role == "ps":
        load_tensorflow(cfg.verbose)
        from runner.hardware import place

        resolved = cluster.resolve(hw.resolver, hw.ps, hw.port_base, hw.device_type)
        cluster.serve(resolved, cluster.server(resolved, place(**_hardware(cfg)).session_config))
        return None
    if role == "evaluator":
        dataset = _prepared(cfg)
        return _evaluate(cfg, run_dir, dataset, once=False, until_step=cfg.max_steps)
    owner = cluster.writes_run_dir(hw.name, hw.ps, hw.resolver)
    with rundir.lock(run_dir) if owner else contextlib.nullcontext():
        changed = rundir.check_resume(run_dir, cfg) if owner else None
        dataset = _prepared(cfg)
        resolved = cluster.resolve(hw.resolver, hw.ps, hw.port_base, hw.device_type)
        if (resolved.role, resolved.index) != (role, index):
            raise ConfigError(f"the cluster resolver says this task is {resolved.role} {resolved.index}, the "
                              f"environment {role} {index}; check TF_CONFIG or hardware.ps")
        replicas = cluster.Replicas(resolved.cluster, index, hw.sync)
        servers = []

        def make_task(parts):
            from runner.engine import Task

            servers.append(cluster.server(resolved, parts.session_config))
            cluster.wait_for_cluster(resolved, hw.wait_secs)
            return Task(servers[0].target, is_chief=replicas.is_chief, wait_secs=hw.wait_secs)

        out = _train(cfg, run_dir, dataset, changed, replicas, make_task)
        cluster.tell_ps_done(resolved, servers[0].target)
        return out
