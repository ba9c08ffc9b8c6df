"""mode=tune: the chosen pipeline's fastest settings on this machine (runner.perf.search), written as an experiment
file that only overrides: experiments/tuned_<dataset>_<model>.yaml (``tune.name``), with the measured rates in its
header and the command that uses it.

The search space is each pipeline's ``knobs`` (its schema's ClassVar), its ``order_knobs`` with
``tune.allow_order=true``, and TensorFlow's thread pools with ``tune.threads``; nothing else is ever changed: not
the batch size, the model, the data or, unless allowed, the data order's statistics.
"""
from __future__ import annotations

from omegaconf import DictConfig

from runner.run.data import prepared_dataset
from runner.run.invocation import ALONE, Invocation


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> dict:
    dataset = prepared_dataset(cfg)
    from runner.perf.experiment import tune  # TensorFlow, once the data files are ready

    return tune(cfg, dataset, run_dir, invocation)
