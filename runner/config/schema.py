"""The config's types: one dataclass per group option (registered with Hydra's ConfigStore by runner.config.hydra)
and the top-level :class:`RunnerConfig`.

Each group option's YAML starts from its schema (``defaults: [/schema/pipeline/queue@_here_]``), so a wrong type or
an unknown key fails at composition with the key named. Ranges live in field metadata and are checked by
runner.config.checks, which names the key and the allowed range. Facts a check needs about an option live on its
schema as ``ClassVar``s (``MlpConfig.channels``, ``QueueConfig.reads_files``), so a new option brings its own rule.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from omegaconf import MISSING

from runner.config.datasets import (
    Cifar10Config,
    CsvConfig,
    DigitsConfig,
    FixedLengthConfig,
    IdxConfig,
    ImageFolderConfig,
    MnistConfig,
    ShapesConfig,
    TfRecordConfig,
)
from runner.config.fields import EVAL, POOL, RESUME, TASK, bounded, one_of, setting, tags_of

INT_MAX = 2**31 - 1  # the largest int a bounded field takes: TensorFlow and numpy take these as int32 or as seeds
PRECISIONS = ("fp32", "bf16", "fp16")  # hardware.precision (runner.ops.precision)
SPLITS = ("train", "validation", "test")  # the splits every dataset has (validation: the first training examples)
MODES = ("train", "eval", "bench", "convert", "tune")  # one module each in runner.modes
TRAINERS = ("single", "towers")  # registered in runner.trainers (a test holds the two together)
GROUPS = ("dataset", "model", "pipeline", "optimizer", "schedule", "hardware")


# Each value lives in one place: an option's values in its YAML (conf/GROUP/OPTION.yaml), the top-level ones in
# conf/config.yaml. A schema gives types, ranges and meanings, and a value only where every option of the schema
# shares it (hardware).

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
    reads_files: ClassVar[bool] = False  # whether it reads the dataset's record files itself (else its arrays)
    # mode=tune's search space: key -> candidate values. ``knobs`` change only how fast batches come;
    # ``order_knobs`` change the data order's statistics too, and are searched only with tune.allow_order=true.
    knobs: ClassVar[dict] = {}
    order_knobs: ClassVar[dict] = {}
    name: str = MISSING


@dataclass
class FeedDictConfig(PipelineConfig):
    knobs: ClassVar[dict] = {"prefetch": (False, True)}
    prefetch: bool = MISSING  # make the next batch in a worker thread while the current step runs


@dataclass
class PreloadedConfig(PipelineConfig):
    knobs: ClassVar[dict] = {"prefetch": (False, True), "storage": ("variable", "constant")}
    prefetch: bool = MISSING  # gather and preprocess the next batch while the current step runs
    storage: str = one_of("variable", "constant")  # where the split lives: a variable (fed once) or the graph


@dataclass
class QueueConfig(PipelineConfig):
    reads_files: ClassVar[bool] = True
    knobs: ClassVar[dict] = {"num_threads": (1, 2, 4, 8, 16, 32), "records_per_read": (1, 4, 16, 64, 256)}
    order_knobs: ClassVar[dict] = {"min_fraction_of_examples_in_queue": (0.05, 0.1, 0.2, 0.4)}
    num_threads: int = bounded(1, 256)  # threads running the reader + decode op into shuffle_batch
    min_fraction_of_examples_in_queue: float = bounded(0.0, 1.0, lo_open=True)
    records_per_read: int = bounded(1, 4096)  # records each thread reads, decodes, preprocesses at once


@dataclass
class AutotuneConfig:
    """tf.data's autotuner (tf.data.Options().autotune): it sets every -1 (AUTOTUNE) value while the run goes."""

    algorithm: str = one_of("default", "hill_climb", "gradient_descent", "stage_based")
    cpu_budget: int = bounded(0)  # cores it may use for the input; 0 = every core (tf.data's default)
    ram_budget: int = bounded(0)  # bytes its buffers may hold; 0 = half the machine's memory (tf.data's default)


@dataclass
class TfDataConfig(PipelineConfig):
    reads_files: ClassVar[bool] = True
    knobs: ClassVar[dict] = {"num_parallel_calls": (1, 2, 4, 8, -1), "prefetch": (1, 2, 4, -1),
                             "cache": ("none", "memory", "disk"), "private_threadpool_size": (0, 1, 2, 4, 8),
                             "max_intra_op_parallelism": (1, 2, 0),
                             "autotune.algorithm": ("default", "hill_climb", "gradient_descent", "stage_based"),
                             "autotune.cpu_budget": (0, 1, 2, 4)}
    order_knobs: ClassVar[dict] = {"shuffle_buffer": (1000, 5000, 10000, 50000), "num_parallel_reads": (1, 2, 4, -1),
                                   "deterministic": (True, False)}
    shuffle_buffer: int = bounded(1)  # records; each epoch is still a permutation of the split
    num_parallel_reads: int = bounded(1, 1024, auto=-1)  # record files read at once, interleaved; -1 = AUTOTUNE
    num_parallel_calls: int = bounded(1, auto=-1)  # -1 = tf.data.AUTOTUNE: set by the autotuner
    prefetch: int = bounded(1, auto=-1)  # batches; -1 = tf.data.AUTOTUNE: set by the autotuner
    cache: str = one_of("none", "memory", "disk")  # decoded split: decoded each epoch, held in memory, saved on disk
    private_threadpool_size: int = bounded(0, 1024)  # the input's own thread pool; 0 = TensorFlow's shared one
    max_intra_op_parallelism: int = bounded(0, 1024)  # threads one input op may use; 0 = as many as the pool has
    deterministic: bool = MISSING  # true: the order the pipeline defines; false: training batches as they are ready
    autotune: AutotuneConfig = MISSING
    # tf.data service (runner.distributed.data_service): null, local, or grpc://HOST:PORT of a running dispatcher
    service: Optional[str] = MISSING
    service_workers: int = bounded(1, 64)  # service=local: worker processes started for the run on 127.0.0.1
    processing_mode: str = one_of("distributed_epoch", "parallel_epochs")
    job_name: Optional[str] = MISSING  # null: one per run dir (every tower and cluster worker of the run shares it)
    service_compression: str = one_of("none", "auto")  # auto: the workers compress batches (less network, more CPU)


# mode=bench's arms beside the pipelines: a name and the pipeline it measures with which settings. "autotune" is
# tf.data as its users write it: AUTOTUNE everywhere, tf.data's autotuner with its own defaults, tf.data's threading.
BENCH_ARMS: dict[str, tuple[str, dict]] = {
    "autotune": ("tf_data", {"num_parallel_reads": -1, "num_parallel_calls": -1, "prefetch": -1, "cache": "none",
                             "private_threadpool_size": 0, "max_intra_op_parallelism": 0, "deterministic": True,
                             "autotune": {"algorithm": "default", "cpu_budget": 0, "ram_budget": 0}})}


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


@dataclass
class PiecewiseConstantConfig(ScheduleConfig):
    boundaries: list[int] = MISSING  # global steps at which the rate changes, increasing
    multipliers: list[float] = MISSING  # optimizer.lr times each: before the first boundary, ..., after the last


# ---------------------------------------------------------------------------------------------- hardware
@dataclass
class HardwareConfig:
    # one: this process runs the mode; task: a task of a cluster (ps, worker, evaluator) started with the others by
    # hand or by SLURM; launcher: this process starts the cluster's tasks on this machine and owns the run dir
    processes: ClassVar[str] = "one"
    name: str = MISSING
    device_type: str = one_of("cpu", "gpu", "auto", tags=(TASK,))  # auto: one GPU if TensorFlow sees one, else the CPU
    num_devices: int = bounded(1, 64, tags=(TASK,))  # towers: one model replica per device
    variable_device: str = one_of("cpu", "gpu", default="cpu", tags=(TASK,))  # where variables live
    intra_op_threads: int = bounded(0, 4096, default=0, tags=(POOL,))  # 0 = TensorFlow picks
    inter_op_threads: int = bounded(0, 4096, default=0, tags=(POOL,))
    soft_placement: bool = setting(TASK, default=True)  # ops without a kernel on the tower's device run where they can
    strict: bool = setting(TASK, default=False)  # fail instead of warning when fewer devices exist than asked
    precision: str = one_of(*PRECISIONS, default="fp32")  # the model's compute type; variables float32
    xla: bool = False  # XLA auto-clustering (JIT) of the graph; ops XLA cannot compile run as usual


@dataclass
class ClusterConfig(HardwareConfig):
    """Between-graph replication on TensorFlow's runtime; num_devices are the towers of each worker."""

    processes: ClassVar[str] = "task"

    sync: bool = setting(TASK, default=True)  # SyncReplicasOptimizer: one gradient per worker per step; false: async
    ps: int = bounded(1, 64, default=1, tags=(TASK,))  # under SLURM: how many of the job step's tasks are ps (first)
    resolver: str = one_of("auto", "tf_config", "slurm", default="auto")  # auto: TF_CONFIG if set, else SLURM
    port_base: int = bounded(1024, 65535, default=8888)  # SLURM: the first task's port on each node
    wait_secs: int = bounded(1, default=600, tags=(TASK,))  # how long a worker waits for the chief to initialize


@dataclass
class LocalClusterConfig(ClusterConfig):
    """The same cluster started on 127.0.0.1 by one command, its tasks as child processes."""

    processes: ClassVar[str] = "launcher"

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
    repeats: int = bounded(1, 1000)  # rounds of the whole measurement: each ratio to the bound with its interval
    stages: bool = MISSING  # also time each stage's prefix of every pipeline and say what limits it
    # tf.data service arms: the tf_data pipeline's batches from N local worker processes, for each N listed
    service_workers: Optional[list[int]] = MISSING
    service_cpus: Optional[list[int]] = MISSING  # the CPUs the service's workers run on; the bench keeps the others


# ---------------------------------------------------------------------------------------------- tune
@dataclass
class TuneConfig:
    pipelines: Optional[list[str]] = MISSING  # null: the chosen pipeline; or e.g. [queue, tf_data]
    budget_secs: float = bounded(1.0, infinite=True)  # the search stops before a trial would pass it (inf: never)
    name: Optional[str] = MISSING  # experiments/NAME.yaml; null: tuned_<dataset>_<model>
    overwrite: bool = MISSING  # replace experiments/NAME.yaml though mode=tune did not write it
    allow_order: bool = MISSING  # also search the knobs that change the data order (shuffle buffer, queue fill)
    threads: bool = MISSING  # also search TensorFlow's thread pools (hardware.intra_op_threads, inter_op_threads)
    search: str = one_of("guided", "grid")  # guided by the stage attribution, or every combination (to compare)
    knobs: Optional[list[str]] = MISSING  # null: the whole space; or some of its knobs (``cache``, ``pipeline.cache``)
    confirm_rounds: int = bounded(2, 100, auto=0)  # paired rounds confirming the winner before it is named; 0: none


# ---------------------------------------------------------------------------------------------- report
@dataclass
class ReportConfig:
    replicate_over: list[str] = MISSING  # keys whose values repeat one setting (seed): a sweep's groups
    compare: Optional[list[str]] = MISSING  # metrics to compare groups on; null: sweep_objective, else precision


# ---------------------------------------------------------------------------------------------- the training loop
@dataclass
class EarlyStoppingConfig:
    """A stop when an eval metric stops improving, checked at each eval (runner.engine.watch)."""

    metric: Optional[str] = MISSING  # precision_SPLIT of an eval split (precision_validation); null: off
    mode: str = one_of("max", "min")  # max: higher is better
    patience: int = bounded(0)  # evals in a row without an improvement of more than min_delta before the stop
    min_delta: float = bounded(0.0)


@dataclass
class RecoveryConfig:
    """A diverged step (a NaN loss, or one above loss_upper_bound): the last checkpoint's weights restored and training
    going on from the next step and the next batches, up to max_trials times (runner.engine.hooks.DivergenceHook)."""

    loss_upper_bound: Optional[float] = MISSING  # a loss above it counts as diverged; null: NaN or infinite only
    max_trials: int = bounded(0, 1000)  # recoveries before the run stops (one line, exit 2); 0: the first stops it


@dataclass
class CheckpointConfig:
    """checkpoint=latest|best: which checkpoint mode=eval evaluates; keep_best: the metric training keeps one by."""

    name: str = one_of("latest", "best")
    keep_best: Optional[str] = MISSING  # precision_SPLIT: the best checkpoint by it kept apart, in checkpoints/best/


# ---------------------------------------------------------------------------------------------- tracking
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql")  # tracking.uri's


@dataclass
class TrackingConfig:
    """Where runs are recorded besides their run dirs (runner.records.tracking): tracking=none|mlflow."""

    name: str = one_of("none", "mlflow")
    uri: Optional[str] = MISSING  # null: an SQLite store, mlflow.db, in the folder the command runs in
    experiment: Optional[str] = MISSING  # MLflow's experiment; null: experiment=NAME's name, else runner


# ---------------------------------------------------------------------------------------------- top level
@dataclass
class RunnerConfig:
    """The run's config. Tagged keys (runner.config.fields): RESUME ones a resumed run may change, EVAL ones mode=eval
    takes from its command line; a tagged group or section (hardware, bench) counts whole."""

    mode: str = one_of(*MODES, tags=(RESUME,))
    batch_size: int = bounded(1, tags=(EVAL,))  # per tower
    max_steps: int = bounded(1, tags=(RESUME,))
    seed: int = bounded(0)
    run_dir: str = setting(RESUME)  # where checkpoints, events and summaries go (Hydra's run dir)
    trainer: str = setting(RESUME)  # one of TRAINERS, or auto: towers with several devices, else single
    log_every: int = bounded(1, tags=(RESUME,))  # steps between progress lines
    summary_every: int = bounded(1, tags=(RESUME,))  # steps between TensorBoard summaries
    checkpoint_every: int = bounded(1, tags=(RESUME,))  # steps between checkpoints (each followed by an eval)
    keep_checkpoints: int = bounded(1, tags=(RESUME,))
    eval_splits: list[str] = setting(RESUME, EVAL)  # of SPLITS
    moving_average_decay: Optional[float] = bounded(0.0, 1.0, lo_open=True)  # None: no averages
    eval_moving_average: bool = setting(RESUME, EVAL)  # evaluate with the averaged variables when they exist
    eval_once: bool = setting(RESUME, EVAL)  # mode=eval: one pass, or re-evaluate new checkpoints every interval
    eval_interval_secs: float = bounded(0.0, lo_open=True, tags=(RESUME, EVAL))
    bench: BenchConfig = setting(RESUME, default_factory=BenchConfig)
    tune: TuneConfig = setting(RESUME, default_factory=TuneConfig)
    report: ReportConfig = setting(RESUME, default_factory=ReportConfig)
    tracking: TrackingConfig = setting(RESUME, EVAL, default_factory=TrackingConfig)
    early_stopping: EarlyStoppingConfig = setting(RESUME, default_factory=EarlyStoppingConfig)
    recovery: RecoveryConfig = setting(RESUME, default_factory=RecoveryConfig)
    checkpoint: CheckpointConfig = setting(RESUME, EVAL, default_factory=CheckpointConfig)
    # e.g. final_precision.test (or precision_test): a run returns that number; a list for a search of several
    sweep_objective: Any = setting(RESUME)
    progress: str = one_of("auto", "bar", "lines", tags=(RESUME, EVAL))  # auto: a bar on a terminal, else lines
    log_style: str = one_of("mnist", "cifar10")  # the progress line of fully_connected_feed or of cifar10_train
    profile: Optional[list[int]] = MISSING  # [first, last]: trace those steps (TensorBoard profiler, timelines)
    verbose: bool = setting(RESUME, EVAL)  # show TensorFlow's C++ logs and deprecation warnings
    deterministic: bool = setting(RESUME)  # op determinism and a fixed input order: two runs of one seed, equal bits
    force_resume: bool = setting(RESUME)  # continue a run dir's training even if the config changed in ways that matter
    dataset: Any = MISSING  # its keys tagged in runner.config.datasets
    model: Any = MISSING
    pipeline: Any = setting(EVAL)
    optimizer: Any = MISSING
    schedule: Any = MISSING
    hardware: Any = setting(RESUME, EVAL)


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"digits": DigitsConfig, "mnist": MnistConfig, "shapes": ShapesConfig, "cifar10": Cifar10Config,
                "image_folder": ImageFolderConfig, "tfrecord": TfRecordConfig, "csv": CsvConfig, "idx": IdxConfig,
                "fixed_length": FixedLengthConfig},
    "model": {"mlp": MlpConfig, "cifar10_cnn": Cifar10CnnConfig},
    "pipeline": {"feed_dict": FeedDictConfig, "preloaded": PreloadedConfig, "queue": QueueConfig,
                 "tf_data": TfDataConfig},
    "optimizer": {"base": OptimizerConfig, "momentum": MomentumConfig, "adam": AdamConfig},
    "schedule": {"base": ScheduleConfig, "exponential_decay": ExponentialDecayConfig,
                 "piecewise_constant": PiecewiseConstantConfig},
    "hardware": {"base": HardwareConfig, "cluster": ClusterConfig, "local_cluster": LocalClusterConfig},
}
"""Schemas by group, stored as ``schema/<group>/<name>``; several options may share one (``base``). The keys of
``dataset``, ``model`` and ``pipeline`` are the names their parts register (a test holds them together)."""


@functools.cache
def keys_tagged(tag: str) -> tuple[str, ...]:
    """The config's keys whose field carries ``tag`` (runner.config.fields): RunnerConfig's own (a section or group
    whole), then each group option's (``dataset.root``), in the schemas' order."""
    found = [f.name for f in dataclasses.fields(RunnerConfig) if tag in tags_of(f)]
    for group in GROUPS:
        if group in found:
            continue
        for schema in SCHEMAS[group].values():
            found += [f"{group}.{f.name}" for f in dataclasses.fields(schema) if tag in tags_of(f)]
    return tuple(dict.fromkeys(found))
