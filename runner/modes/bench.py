"""mode=bench: what each input method costs on this machine, against the model-only bound (runner.perf.bench), in
each of bench.precisions."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from runner.config.checks import bench_pipelines
from runner.config.hydra import recorded, settings, with_pipeline
from runner.run.data import prepared_dataset
from runner.run.invocation import ALONE, Invocation


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> dict:
    """bench.json's figures: the bound and every pipeline in every precision."""
    dataset = prepared_dataset(cfg)
    from runner.engine.topology import Topology
    from runner.perf.bench import bench
    from runner.run.build import build_parts, describe, placement  # TensorFlow, once the data files are ready
    from runner.run.runs import naming_damaged_records

    names = bench_pipelines(cfg)
    precisions = list(cfg.bench.precisions or [cfg.hardware.precision])
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    def make_parts(name: str, precision: str):
        """New parts each time: a pipeline holds the tensors of the graph it was built in (preloaded's data)."""
        run = settings(with_pipeline(cfg, name, precision))
        return build_parts(run, dataset, Topology(placement(run.hardware, invocation.parallel_jobs)))

    describe(settings(cfg), make_parts(names[0], precisions[0]), run_dir)

    with naming_damaged_records(dataset, invocation.overrides):
        run = settings(cfg)
        return bench(make_parts, names, precisions, run, run_dir, recorded(run))
