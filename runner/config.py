"""Typed config schemas (registered with Hydra's ConfigStore) and the range checks that run before TensorFlow loads.

Each group option's YAML starts from its schema (``defaults: [/schema/pipeline/queue@_here_]``), so a wrong type or
an unknown key fails at composition with the key named. Ranges live in field metadata and are checked by
:func:`validate`, which names the key and the allowed range.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

from runner.cluster import CLUSTER_HARDWARE
from runner.errors import ConfigError


CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
INT_MAX = 2**31 - 1
PRECISIONS = ("fp32", "bf16", "fp16")  # hardware.precision (runner.precision)  # TensorFlow and numpy take these as int32 or as seeds


def bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, auto: int | None = None,
            default: Any = MISSING) -> Any:
    """A field whose value must lie in [lo, hi] (or (lo, hi] with ``lo_open``); None bounds are open-ended.
    ``auto`` is a value allowed besides the range (such as -1 for AUTOTUNE)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "auto": auto})


def one_of(*choices: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"choices": choices})


# Each value lives in one place: an option's values in its YAML (conf/GROUP/OPTION.yaml), the top-level ones in
# conf/config.yaml. A schema gives types, ranges and meanings, and a value only where every option of the schema
# shares it (hardware).

# ---------------------------------------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    name: str = MISSING
    validation_size: int = bounded(0)  # the first N training examples form the validation split
    augment: str = one_of("none", "cifar10")  # none: pixels scaled to [0, 1]; cifar10: the tutorial's distortions


@dataclass
class StoredDatasetConfig(DatasetConfig):
    data_dir: str = MISSING  # where the files live (or are downloaded/generated to)


@dataclass
class DigitsConfig(StoredDatasetConfig):
    num_train: int = bounded(1)  # generated training examples (validation included)
    num_test: int = bounded(1)
    generator_seed: int = bounded(0)  # the data are a pure function of this seed and the sizes


@dataclass
class ShapesConfig(StoredDatasetConfig):
    num_train: int = bounded(1)  # generated training records, spread over data_batch_1..5.bin
    num_test: int = bounded(1)
    generator_seed: int = bounded(0)


@dataclass
class Cifar10Config(StoredDatasetConfig):
    download: bool = MISSING  # fetch cifar-10-binary.tar.gz when neither the batches nor the archive are there
    url: str = MISSING


@dataclass
class MnistConfig(StoredDatasetConfig):
    download: bool = MISSING  # fetch missing files from the mirrors
    mirrors: list[str] = MISSING  # base URLs, tried in order
    verify_md5: bool = MISSING  # false: read other MNIST-format files in data_dir (Fashion-MNIST, a re-split)


@dataclass
class OwnDatasetConfig(DatasetConfig):
    """A user's own files, described in YAML."""

    root: str = MISSING  # the folder of the files; file names and globs are relative to it


@dataclass
class DecodedDatasetConfig(OwnDatasetConfig):
    cache_dir: str = MISSING  # where the decoded arrays (and converted TFRecords) are cached


@dataclass
class ImageFolderConfig(DecodedDatasetConfig):
    image_size: list[int] = MISSING  # [height, width] every image is fitted to
    channels: int = bounded(1, 4)  # 1 grey, 3 RGB (converted as needed; alpha dropped)
    fit: str = one_of("resize", "center_crop")
    read_from: str = one_of("files", "tfrecords")  # what queue and tf_data read: the images, or TFRecords of them


@dataclass
class TfRecordConfig(DecodedDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    image_key: str = MISSING  # the bytes feature of the image
    label_key: str = MISSING  # the int64 feature of the label
    image_format: str = one_of("raw", "encoded")  # raw pixels, or an encoded JPEG/PNG
    image_shape: list[int] = MISSING  # raw: the stored shape; encoded: [height, width, channels] to fit to
    image_dtype: str = one_of("uint8", "float32")  # raw pixels' type
    fit: str = one_of("resize", "center_crop")  # encoded images
    compression: str = one_of("none", "GZIP", "ZLIB")
    num_classes: int = bounded(1)


@dataclass
class CsvConfig(DecodedDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    header: bool = MISSING  # each file starts with a row of column names
    label_column: str = MISSING  # a column name (with a header) or a 0-based index
    feature_columns: Optional[list[str]] = MISSING  # names or indices; null: every column but the label
    column_defaults: dict[str, float] = MISSING  # column -> value for missing entries; others are required
    field_delim: str = field(default=MISSING, metadata={"blank": True})  # "," or a tab, a space, ...
    num_classes: int = bounded(1)


@dataclass
class IdxConfig(OwnDatasetConfig):
    train_images: str = MISSING  # file names under root (.gz: gzipped)
    train_labels: str = MISSING
    test_images: str = MISSING
    test_labels: str = MISSING
    md5: dict[str, str] = MISSING  # file name -> md5 to check; files not listed are not checked
    num_classes: int = bounded(1)


@dataclass
class FixedLengthConfig(OwnDatasetConfig):
    train_files: list[str] = MISSING  # names or globs under root
    test_files: list[str] = MISSING
    image_shape: list[int] = MISSING  # [height, width, channels]
    order: str = one_of("chw", "hwc")  # how image bytes are stored: channels first (CIFAR) or last
    header_bytes: int = bounded(0)  # bytes before the first record of each file
    label_bytes: int = bounded(1)  # label bytes at the start of each record (CIFAR-100: 2)
    label_index: int = bounded(0)  # which label byte is the label (CIFAR-100: 0 coarse, 1 fine)
    num_classes: int = bounded(1)


# ---------------------------------------------------------------------------------------------- model
@dataclass
class MlpConfig:
    channels: ClassVar[int | None] = None  # takes any image (flattened)
    name: str = MISSING
    hidden1: int = bounded(1)
    hidden2: int = bounded(1)


@dataclass
class Cifar10CnnConfig:
    channels: ClassVar[int | None] = 3  # conv1 is 5x5x3
    name: str = MISSING
    weight_decay: float = bounded(0.0)  # L2 on the local3/local4 weights, added to the loss


# ---------------------------------------------------------------------------------------------- pipeline
@dataclass
class PipelineConfig:
    name: str = MISSING


@dataclass
class FeedDictConfig(PipelineConfig):
    prefetch: bool = MISSING  # make the next batch in a worker thread while the current step runs


@dataclass
class PreloadedConfig(PipelineConfig):
    prefetch: bool = MISSING  # gather and preprocess the next batch while the current step runs
    storage: str = one_of("variable", "constant")  # where the split lives: a variable (fed once) or the graph


@dataclass
class QueueConfig(PipelineConfig):
    num_threads: int = bounded(1, 256)  # threads running the reader + decode op into shuffle_batch
    min_fraction_of_examples_in_queue: float = bounded(0.0, 1.0, lo_open=True)
    records_per_read: int = bounded(1, 4096)  # records each thread reads, decodes, preprocesses at once


@dataclass
class TfDataConfig(PipelineConfig):
    shuffle_buffer: int = bounded(1)  # records; each epoch is still a permutation of the split
    num_parallel_calls: int = bounded(1, auto=-1)  # -1 = tf.data.AUTOTUNE
    prefetch: int = bounded(1, auto=-1)  # batches; -1 = tf.data.AUTOTUNE


# ---------------------------------------------------------------------------------------------- optimizer
@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = bounded(0.0, lo_open=True)  # initial learning rate


@dataclass
class MomentumConfig(OptimizerConfig):
    momentum: float = bounded(0.0, 1.0)
    use_nesterov: bool = MISSING


@dataclass
class AdamConfig(OptimizerConfig):
    beta1: float = bounded(0.0, 1.0)
    beta2: float = bounded(0.0, 1.0)
    epsilon: float = bounded(0.0, lo_open=True)


# ---------------------------------------------------------------------------------------------- schedule
@dataclass
class ScheduleConfig:
    name: str = MISSING


@dataclass
class ExponentialDecayConfig(ScheduleConfig):
    decay_epochs: float = bounded(0.0, lo_open=True)  # epochs between decays
    decay_rate: float = bounded(0.0, lo_open=True)  # lr multiplier per decay
    staircase: bool = MISSING


# ---------------------------------------------------------------------------------------------- hardware
@dataclass
class HardwareConfig:
    name: str = MISSING
    device_type: str = one_of("cpu", "gpu", "auto")  # auto: one GPU if TensorFlow sees one, else the CPU
    num_devices: int = bounded(1, 64)  # towers: one model replica per device
    variable_device: str = one_of("cpu", "gpu", default="cpu")  # where variables live
    intra_op_threads: int = bounded(0, 4096, default=0)  # 0 = TensorFlow picks
    inter_op_threads: int = bounded(0, 4096, default=0)
    soft_placement: bool = True  # ops without a kernel on the tower's device run where they can
    strict: bool = False  # fail instead of warning when fewer devices exist than asked
    precision: str = one_of(*PRECISIONS, default="fp32")  # the model's compute type; variables float32
    xla: bool = False  # XLA auto-clustering (JIT) of the graph; ops XLA cannot compile run as usual


@dataclass
class ClusterConfig(HardwareConfig):
    """Between-graph replication on TensorFlow's runtime; num_devices are the towers of each worker."""

    sync: bool = True  # SyncReplicasOptimizer: one gradient per worker per step; false: asynchronous updates
    ps: int = bounded(1, 64, default=1)  # under SLURM: how many of the job step's tasks are ps (the first ones)
    resolver: str = one_of("auto", "tf_config", "slurm", default="auto")  # auto: TF_CONFIG if set, else SLURM
    port_base: int = bounded(1024, 65535, default=8888)  # SLURM: the first task's port on each node
    wait_secs: int = bounded(1, default=600)  # how long a worker waits for the chief to initialize


@dataclass
class LocalClusterConfig(ClusterConfig):
    """The same cluster started on 127.0.0.1 by one command, its tasks as child processes."""

    workers: int = bounded(1, 64, default=2)
    evaluator: bool = False  # also an evaluator task: the continuous eval of the chief's checkpoints


# ---------------------------------------------------------------------------------------------- bench
@dataclass
class BenchConfig:
    pipelines: Optional[list[str]] = MISSING  # null: all registered pipelines
    warmup_steps: int = bounded(0)  # steps run before timing starts (graph warm-up, queue settling)
    windows: int = bounded(1)  # timed windows; the median is reported
    steps_per_window: int = bounded(1)
    training_run: bool = MISSING  # also train each pipeline with the real loop (hooks, summaries, progress lines)
    precisions: Optional[list[str]] = MISSING  # null: hardware.precision; [fp32, bf16]: each, bounds paired


# ---------------------------------------------------------------------------------------------- top level
@dataclass
class RunnerConfig:
    mode: str = one_of("train", "eval", "bench", "convert")
    batch_size: int = bounded(1)  # per tower
    max_steps: int = bounded(1)
    seed: int = bounded(0)
    run_dir: str = MISSING  # where checkpoints, events and summaries go (Hydra's run dir)
    trainer: str = MISSING  # a registered trainer, or auto: towers with several devices, else single
    log_every: int = bounded(1)  # steps between progress lines
    summary_every: int = bounded(1)  # steps between TensorBoard summaries
    checkpoint_every: int = bounded(1)  # steps between checkpoints (each followed by an eval)
    keep_checkpoints: int = bounded(1)
    eval_splits: list[str] = MISSING
    moving_average_decay: Optional[float] = bounded(0.0, 1.0, lo_open=True)  # None: no averages
    eval_moving_average: bool = MISSING  # evaluate with the averaged variables when they exist
    eval_once: bool = MISSING  # mode=eval: one pass, or re-evaluate new checkpoints every eval_interval_secs
    eval_interval_secs: float = bounded(0.0, lo_open=True)
    bench: BenchConfig = field(default_factory=BenchConfig)
    sweep_objective: Optional[str] = MISSING  # e.g. final_precision.test: a run returns that number (Optuna)
    progress: str = one_of("auto", "bar", "lines")  # auto: a progress bar on a terminal, lines otherwise
    log_style: str = one_of("mnist", "cifar10")  # the progress line of fully_connected_feed or of cifar10_train
    profile: Optional[list[int]] = MISSING  # [first, last]: trace those steps (TensorBoard profiler, timelines)
    verbose: bool = MISSING  # show TensorFlow's C++ logs and deprecation warnings
    force_resume: bool = MISSING  # continue a run dir's training even if the config changed in ways that matter
    dataset: Any = MISSING
    model: Any = MISSING
    pipeline: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    hardware: Any = MISSING


SCHEMAS = {
    "dataset": {"digits": DigitsConfig, "mnist": MnistConfig, "shapes": ShapesConfig, "cifar10": Cifar10Config,
                "image_folder": ImageFolderConfig, "tfrecord": TfRecordConfig, "csv": CsvConfig, "idx": IdxConfig,
                "fixed_length": FixedLengthConfig},
    "model": {"mlp": MlpConfig, "cifar10_cnn": Cifar10CnnConfig},
    "pipeline": {"feed_dict": FeedDictConfig, "preloaded": PreloadedConfig, "queue": QueueConfig,
                 "tf_data": TfDataConfig},
    "optimizer": {"base": OptimizerConfig, "momentum": MomentumConfig, "adam": AdamConfig},
    "schedule": {"base": ScheduleConfig, "exponential_decay": ExponentialDecayConfig},
    "hardware": {"base": HardwareConfig, "cluster": ClusterConfig, "local_cluster": LocalClusterConfig},
}
"""Schemas by group, stored as ``schema/<group>/<name>``; several options may share one (``base``)."""


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="runner_schema", node=RunnerConfig)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)


def _sweep_key(overrides) -> str:
    """A sweep's dir name from its overrides as typed: the same sweep command finds the same dir again, so a rerun
    continues it.

    Registered with ``use_cache``: the launcher resolves ``hydra.sweep.dir`` once on the sweep's own config (whose
    ``hydra.overrides.task`` is the sweep as typed, ``batch_size=50,100``), and Hydra copies that config's resolver
    cache into every job's config (``load_sweep_config``), pickled along to joblib, submitit and Ray workers. So
    every job resolves the sweep's dir, not one of its own from its own overrides (``batch_size=50``)."""
    import hashlib

    text = " ".join(sorted(str(o) for o in overrides))
    return "sweep-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def register_resolvers() -> None:
    from runner.rundir import hydra_subdir

    if not OmegaConf.has_resolver("runner.subdir"):
        OmegaConf.register_new_resolver("runner.subdir", hydra_subdir)
    if not OmegaConf.has_resolver("runner.sweep_key"):
        OmegaConf.register_new_resolver("runner.sweep_key", _sweep_key, use_cache=True)
    if not OmegaConf.has_resolver("runner.cwd"):  # the sweep's folder, not a Ray worker's: cached as the key is
        OmegaConf.register_new_resolver("runner.cwd", os.getcwd, use_cache=True)


def registered(package: str) -> list[str]:
    """The names registered in runner.<package> (pipelines, models, trainers), read from its module files
    without importing them: each part's module is named as its registry entry."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent / package)]) if m.name != "base")


# ---------------------------------------------------------------------------------------------- validation
def _check_field(path: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of: {allowed}")
    if isinstance(value, str) and not value.strip() and not (value and meta.get("blank")):
        raise ConfigError(f"{path} is empty; give it a value")
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if isinstance(value, int) and not isinstance(value, bool) and lo is not None:
        hi = INT_MAX if hi is None else hi
    if (lo is None and hi is None) or value == meta.get("auto"):
        return
    bad = isinstance(value, float) and not math.isfinite(value)
    bad = bad or (lo is not None and (value <= lo if lo_open else value < lo))
    bad = bad or (hi is not None and value > hi)
    if bad:
        left = "(" if lo_open else "["
        rng = f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        auto = f" or {meta['auto']}" if meta.get("auto") is not None else ""
        raise ConfigError(f"{path}={value} is out of range; allowed: {rng}{auto}")


def _walk(node: DictConfig, prefix: str, schema: Any) -> None:
    """Checks every key of ``node`` against its dataclass ``schema``: known, set, and in range."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node.keys():
        path = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(f for f in fields if f != "name")
            raise ConfigError(f"{path} is not a known key; the keys here are: {known}")
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"{path} has no value; set it ({path}=...)")
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            sub = OmegaConf.get_type(child)
            if dataclasses.is_dataclass(sub):
                _walk(child, path + ".", sub)
        elif not isinstance(child, ListConfig):
            _check_field(path, node[key], fields[key].metadata)


GROUPS = ("dataset", "model", "pipeline", "optimizer", "schedule", "hardware")


def schema_of(group: str, option: str) -> Any:
    """The schema an option's YAML starts from (its ``/schema/GROUP/NAME@_here_`` default)."""
    path = Path(CONF_DIR) / group / f"{option}.yaml"
    entries = OmegaConf.load(path).get("defaults", []) if path.exists() else []
    for entry in entries:
        if isinstance(entry, str) and entry.startswith(f"/schema/{group}/"):
            return SCHEMAS[group][entry[len(f"/schema/{group}/"):].split("@")[0]]
    raise ConfigError(f"{group}={option} has no schema: conf/{group}/{option}.yaml must start from one")


def compose_config(overrides: list[str]) -> DictConfig:
    """The config Hydra composes from ``overrides``, through its compose API: inside the running app, or on its
    own."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def compose_group(group: str, option: str) -> DictConfig:
    """A group option as Hydra composes it (its YAML on its schema)."""
    return compose_config([f"{group}={option}"])[group]


def typed(cfg: DictConfig) -> DictConfig:
    """A config read from a file (a run's saved config), typed by the schemas again, so it is validated and merged
    like a composed one."""
    try:
        out = OmegaConf.merge(OmegaConf.structured(RunnerConfig),
                              {k: v for k, v in cfg.items() if k not in GROUPS})
        with open_dict(out):
            for group in GROUPS:
                out[group] = OmegaConf.merge(OmegaConf.structured(schema_of(group, cfg[group].name)), cfg[group])
    except (ValueError, KeyError, AttributeError) as err:  # OmegaConf's errors derive from these
        raise ConfigError(f"a saved config does not fit this version of runner: {str(err).splitlines()[0]}") from None
    return out


def _group_schema(cfg: DictConfig, group: str) -> Any:
    schema = OmegaConf.get_type(cfg[group])
    if not dataclasses.is_dataclass(schema):
        name = cfg[group].get("name", "?")
        raise ConfigError(f"{group}={name} has no schema: conf/{group}/{name}.yaml must start from one "
                          f"(defaults: [/schema/{group}/NAME@_here_, _self_]; schemas are in runner/config.py)")
    return schema


class ValidateBeforeRun(Callback):
    """Hydra callback: a single run's config is checked before Hydra creates its run dir, so a rejected config
    leaves nothing behind. (Sweep jobs are checked in the job, where a failure is recorded in the report.)"""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        job = config.copy()
        with open_dict(job):
            del job["hydra"]
        try:
            validate(job)
            _check_writable(job.run_dir)
        except ConfigError as err:
            print(f"error: {err}", flush=True)
            sys.exit(2)


def _check_writable(run_dir: str) -> None:
    """The run dir can be made (or is a writable folder)."""
    path = Path(run_dir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file, not a folder; choose another run_dir")
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"run_dir={run_dir}: {existing} is a file, not a folder; choose another run_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir={run_dir}: {existing} is not writable; choose another run_dir")


SUMMARY_NUMBERS = ("examples_per_sec", "wall_time_sec", "steps", "steps_this_run")


def _check_dataset(cfg: DictConfig, pipelines: list[str]) -> None:
    """The dataset against the model, the pipelines and the mode. The dataset object is made (which reads no
    data); what only its files can tell (a CSV's columns, an IDX file's shape) is checked when a run reads them."""
    from runner.datasets import DATASETS
    from runner.errors import DataError

    params = OmegaConf.to_container(cfg.dataset, resolve=True)
    dataset = DATASETS.get(params.pop("name"))(**params)
    name = cfg.dataset.name
    channels = _group_schema(cfg, "model").channels
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
    reads_files = [p for p in pipelines if p in ("queue", "tf_data")]
    if not dataset.files_hold_validation and cfg.dataset.validation_size and reads_files:
        raise ConfigError(f"pipeline={reads_files[0]} reads whole {dataset.kind} files, which hold no validation "
                          f"split: use dataset.validation_size=0 with it, or pipeline=feed_dict or preloaded")
    if cfg.mode == "convert" and not dataset.convertible:
        raise ConfigError(f"mode=convert writes TFRecords that the queue and tf_data pipelines read; dataset={name} "
                          f"is read from its own {dataset.kind} files as they are")


def validate(cfg: DictConfig) -> None:
    """Checks every key against its schema (known, set, in range) and the rules between keys; raises ConfigError
    naming the key and what is allowed. Imports no TensorFlow."""

    from runner.datasets.base import SPLITS

    for group in GROUPS:
        _group_schema(cfg, group)
    _walk(cfg, "", RunnerConfig)
    for split in cfg.eval_splits:
        if split not in SPLITS:
            raise ConfigError(f"eval_splits contains {split!r}; known splits: {', '.join(sorted(SPLITS))}")
    for key, package in (("pipeline.name", "pipelines"), ("model.name", "models")):
        if OmegaConf.select(cfg, key) not in registered(package):
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)!r} is not known; choose one of: "
                              f"{', '.join(registered(package))}")
    trainers = ["auto", *registered("trainers")]
    if cfg.trainer not in trainers:
        raise ConfigError(f"trainer={cfg.trainer!r} is not known; choose one of: {', '.join(trainers)}")
    if cfg.trainer == "single" and cfg.hardware.num_devices > 1:
        raise ConfigError(f"trainer=single runs on one device but hardware={cfg.hardware.name} has "
                          f"{cfg.hardware.num_devices}; use trainer=auto or trainer=towers, or hardware=cpu")
    if cfg.profile is not None and not (len(cfg.profile) == 2 and 1 <= cfg.profile[0] <= cfg.profile[1]):
        raise ConfigError(f"profile={list(cfg.profile)} is not a range of steps; give [first, last] with "
                          f"1 <= first <= last, e.g. profile=[100,110], or profile=null")
    for precision in cfg.bench.precisions or []:
        if precision not in PRECISIONS:
            raise ConfigError(f"bench.precisions contains {precision!r}; choose from: {', '.join(PRECISIONS)}")
    for name in cfg.bench.pipelines or []:
        if name not in registered("pipelines"):
            raise ConfigError(f"bench.pipelines contains {name!r}; known pipelines: "
                              f"{', '.join(registered('pipelines'))}")
    used = [cfg.pipeline.name] if cfg.mode != "bench" else list(cfg.bench.pipelines or registered("pipelines"))
    _check_dataset(cfg, used)
    if cfg.hardware.name in CLUSTER_HARDWARE and cfg.mode == "bench":
        raise ConfigError(f"mode=bench measures one process; hardware={cfg.hardware.name} is for training (use "
                          f"hardware=cpu or a towers option)")
    objective = cfg.sweep_objective
    if objective is not None:
        allowed = [f"final_precision.{split}" for split in cfg.eval_splits] + list(SUMMARY_NUMBERS)
        if objective not in allowed:
            raise ConfigError(f"sweep_objective={objective} is not a number a run reports; choose one of: "
                              f"{', '.join(allowed)}")
