"""Config tier: every option and experiment composes and validates; bad values fail naming the key."""
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from runner.core.errors import ConfigError
from runner.run.validate import validate
from tests.helpers import compose

ROOT = Path(__file__).resolve().parent.parent
SKIP = ("experiment", "preset", "hydra")
GROUPS = [d for d in sorted((ROOT / "conf").iterdir()) if d.is_dir() and d.name not in SKIP]
OPTIONS = [(d.name, p.stem) for d in GROUPS for p in sorted(d.glob("*.yaml"))]
USER_VALUES = {"root": "/tmp", "num_classes": 3}  # root: a folder that exists (validation checks it)
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes_and_validates(group, option):
    cfg = compose(f"{group}={option}", *(["dataset=shapes"] if option == "cifar10_cnn" else []))
    required = sorted(OmegaConf.missing_keys(cfg))  # values the user must give (a dataset's root)
    if required:
        with pytest.raises(ConfigError, match=rf"({'|'.join(required)}) has no value; set it"):
            validate(cfg)
        cfg = compose(f"{group}={option}", *[f"{key}={USER_VALUES[key.split('.')[-1]]}" for key in required])
    validate(cfg)
    assert cfg[group].name == option


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose(f"experiment={name}")
    required = sorted(OmegaConf.missing_keys(cfg))  # an experiment on the user's own files leaves root to them
    validate(compose(f"experiment={name}", *[f"{key}={USER_VALUES[key.split('.')[-1]]}" for key in required]))


def test_fully_connected_feed_experiment_has_the_originals_settings():
    cfg = compose("experiment=mnist_fully_connected_feed")
    assert (cfg.dataset.name, cfg.pipeline.name, cfg.model.name, cfg.optimizer.name) == \
        ("mnist", "feed_dict", "mlp", "sgd")
    assert (cfg.optimizer.lr, cfg.max_steps, cfg.batch_size, cfg.model.hidden1, cfg.model.hidden2) == \
        (0.01, 2000, 100, 128, 32)
    assert cfg.dataset.validation_size == 5000


@pytest.mark.parametrize("override,message", [
    ("batch_size=0", r"batch_size=0 is out of range; allowed: \[1, 2147483647\]"),
    ("max_steps=-5", r"max_steps=-5 is out of range"),
    ("optimizer.lr=0", r"optimizer.lr=0.0 is out of range; allowed: \(0.0, inf\]"),
    ("mode=dance", r"mode='dance' is not allowed; choose one of: train, eval, bench, convert"),
    ("dataset.validation_size=-1", r"dataset.validation_size=-1 is out of range"),
    ("model.hidden1=0", r"model.hidden1=0 is out of range"),
    ("eval_splits=[test,dev]", r"eval_splits contains 'dev'"),
    ("optimizer.lr=nan", r"optimizer.lr=nan is out of range"),
])
def test_out_of_range_values_name_the_key_and_range(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(override))


@pytest.mark.parametrize("fraction,ok", [(0.0, False), (1e-4, True), (1.0, True), (1.01, False)])
def test_min_fraction_is_in_zero_one(fraction, ok):
    cfg = compose("pipeline=queue", f"pipeline.min_fraction_of_examples_in_queue={fraction}")
    if ok:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=r"min_fraction_of_examples_in_queue=.* allowed: \(0.0, 1.0\]"):
            validate(cfg)


@pytest.mark.parametrize("overrides,key", [
    (["batch_size=many"], "batch_size"),
    (["pipeline=queue", "pipeline.num_threads=1.5"], "pipeline.num_threads"),
    (["pipeline.num_threads=4"], "pipeline.num_threads"),  # feed_dict has no threads
    (["model.hidden3=7"], "model.hidden3"),
    (["bogus=1"], "bogus"),
])
def test_wrong_types_and_unknown_keys_fail_at_composition(overrides, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose(*overrides)
    assert key in str(err.value) + str(err.value.__cause__)


def test_cifar10_alone_selects_the_tutorials_model_and_settings():
    for dataset in ("cifar10", "shapes"):
        cfg = compose(f"dataset={dataset}")
        validate(cfg)
        assert (cfg.model.name, cfg.schedule.name, cfg.optimizer.name) == ("cifar10_cnn", "exponential_decay", "sgd")
        assert (cfg.batch_size, cfg.optimizer.lr, cfg.moving_average_decay, cfg.eval_moving_average) == \
            (128, 0.1, 0.9999, True)
        assert (cfg.schedule.decay_epochs, cfg.schedule.decay_rate, cfg.schedule.staircase) == (350, 0.1, True)
        assert cfg.model.weight_decay == 0.004 and list(cfg.eval_splits) == ["test"]


def test_explicit_choices_win_over_the_datasets_preset():
    cfg = compose("dataset=cifar10", "model=mlp", "batch_size=64", "schedule=constant")
    assert (cfg.model.name, cfg.batch_size, cfg.schedule.name) == ("mlp", 64, "constant")


def test_cifar10_tutorial_experiment():
    cfg = compose("experiment=cifar10_tutorial")
    assert (cfg.dataset.name, cfg.pipeline.name, cfg.model.name, cfg.max_steps) == \
        ("cifar10", "queue", "cifar10_cnn", 1_000_000)
    assert (cfg.pipeline.num_threads, cfg.pipeline.min_fraction_of_examples_in_queue) == (16, 0.4)


def test_each_value_lives_in_one_place():
    """Option values live in the YAMLs: schemas hold none (but hardware's shared ones), parts' constructors and
    functions (datasets, pipelines, models, optimizers, schedules, placement, the eval loop) no defaults, and the run's
    settings are the schema's dataclass (no copy of it with defaults of its own)."""
    import dataclasses
    import inspect

    from omegaconf import MISSING

    import runner.engine.training
    import runner.perf.bench
    from runner.config.schema import SCHEMAS, RunnerConfig
    from runner.datasets import DATASETS
    from runner.engine.evaluation import evaluate
    from runner.engine.hardware import place
    from runner.models import MODELS
    from runner.optim import OPTIMIZERS, SCHEDULES
    from runner.pipelines import PIPELINES

    for group, options in SCHEMAS.items():
        for schema in options.values():
            for f in dataclasses.fields(schema):
                if group != "hardware" or f.name in ("name", "device_type", "num_devices"):
                    assert f.default is MISSING, (schema.__name__, f.name)
    sections = ("bench", "tune", "report", "tracking", "early_stopping", "checkpoint", "recovery")
    assert all(f.default is MISSING for f in dataclasses.fields(RunnerConfig) if f.name not in sections)
    registries = (DATASETS, PIPELINES, MODELS, OPTIMIZERS, SCHEDULES)
    parts = [*(registry.get(n) for registry in registries for n in registry.names()), place, evaluate]
    for part in parts:
        defaults = [p.name for p in inspect.signature(part).parameters.values()
                    if p.default is not inspect.Parameter.empty and p.name not in ("md5", "shard", "until_step")]
        assert not defaults, (part, defaults)
    settings = {f.name for f in dataclasses.fields(RunnerConfig)}
    for module in (runner.engine.training, runner.perf.bench):  # they read the run's settings from RunnerConfig
        # (the loop's narrow view of them, TrainSettings, takes every value from it: no default of its own)
        copies = [name for name, value in vars(module).items() if isinstance(value, type) and
                  dataclasses.is_dataclass(value) and value.__module__ == module.__name__
                  and any(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                          for f in dataclasses.fields(value) if f.name in settings)]
        assert not copies, (module.__name__, copies)


def test_a_value_missing_from_an_options_yaml_is_named():
    from omegaconf import MISSING, open_dict

    cfg = compose("pipeline=queue")
    with open_dict(cfg):
        cfg.pipeline.num_threads = MISSING
    with pytest.raises(ConfigError, match=r"pipeline.num_threads has no value; set it"):
        validate(cfg)


def test_every_registered_part_has_the_schema_of_its_name():
    """validate() knows the parts by their schemas' names, without importing TensorFlow; each registered part must
    have one, and each schema its part."""
    from runner.config.schema import SCHEMAS, TRAINERS
    from runner.datasets import DATASETS
    from runner.models import MODELS
    from runner.pipelines import PIPELINES
    from runner.trainers import TRAINERS as TRAINER_REGISTRY

    for group, registry in (("dataset", DATASETS), ("model", MODELS), ("pipeline", PIPELINES)):
        without = [name for name in registry.names() if name not in SCHEMAS[group]]
        assert not without, f"registered {group}s without a schema in runner/config: {without}"
        assert sorted(SCHEMAS[group]) == registry.names()
        assert all(registry.get(name).name == name for name in registry.names())  # registering set the name
    assert sorted(TRAINERS) == TRAINER_REGISTRY.names()
