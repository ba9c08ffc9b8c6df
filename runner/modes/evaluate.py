"""mode=eval, as cifar10_eval: the latest checkpoint of a run, evaluated on the eval splits with the run's saved
config (runner.run.rundir.eval_config, made before validation) and its moving averages when it kept them; once, or each
new checkpoint until stopped (eval_once=false)."""
from __future__ import annotations

from omegaconf import DictConfig

from runner.run.data import prepared_dataset
from runner.run.invocation import ALONE, Invocation


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> dict | None:
    """The last evaluation's results (eval.json)."""
    dataset = prepared_dataset(cfg)
    from runner.run.runs import eval_run  # TensorFlow, once the data files are ready

    return eval_run(cfg, run_dir, dataset, once=cfg.eval_once, invocation=invocation)
