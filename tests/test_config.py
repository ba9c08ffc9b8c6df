"""Config tier: every option and experiment composes and validates; bad values fail naming the key."""
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from runner.config import validate
from runner.errors import ConfigError
from tests.conftest import compose

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = [(d.name, p.stem) for d in sorted((ROOT / "conf").iterdir()) if d.is_dir() and d.name != "experiment"
           for p in sorted(d.glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes_and_validates(group, option):
    cfg = compose(f"{group}={option}")
    validate(cfg)
    assert cfg[group].name == option


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    validate(compose(f"experiment={name}"))


def test_fully_connected_feed_experiment_has_the_originals_settings():
    cfg = compose("experiment=mnist_fully_connected_feed")
    assert (cfg.dataset.name, cfg.pipeline.name, cfg.model.name, cfg.optimizer.name) == \
        ("mnist", "feed_dict", "mlp", "sgd")
    assert (cfg.optimizer.lr, cfg.max_steps, cfg.batch_size, cfg.model.hidden1, cfg.model.hidden2) == \
        (0.01, 2000, 100, 128, 32)
    assert cfg.dataset.validation_size == 5000


@pytest.mark.parametrize("override,message", [
    ("batch_size=0", r"batch_size=0 is out of range; allowed: \[1, inf\]"),
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
