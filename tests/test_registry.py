"""Unit: the registry, and that every registered part has a config and vice versa."""
from pathlib import Path

import pytest

from runner.core.errors import ConfigError
from runner.core.registry import Registry

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_unknown_name_lists_known_names():
    reg = Registry("widget")
    reg.register("b")(object())
    reg.register("a")(object())
    with pytest.raises(ConfigError, match="unknown widget 'c'; known widgets: a, b"):
        reg.get("c")


def test_duplicates_are_refused():
    reg = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)


@pytest.mark.parametrize("group", ["pipeline", "model", "dataset", "optimizer", "schedule"])
def test_one_name_end_to_end(group):
    from runner.datasets import DATASETS
    from runner.models import MODELS
    from runner.optim import OPTIMIZERS, SCHEDULES
    from runner.pipelines import PIPELINES

    registry = {"pipeline": PIPELINES, "model": MODELS, "dataset": DATASETS, "optimizer": OPTIMIZERS,
                "schedule": SCHEDULES}[group]
    assert registry.names() == sorted(p.stem for p in (CONF / group).glob("*.yaml"))
