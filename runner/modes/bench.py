"""mode=bench: what each input method costs on this machine, against the model-only bound (runner.perf.bench), in
each of bench.precisions."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

from runner.config.checks import bench_pipelines
from runner.config.hydra import recorded, settings, with_pipeline
from runner.core.system import pin_process
from runner.distributed.data_service import local_service
from runner.run.data import prepared_dataset
from runner.run.invocation import ALONE, Invocation

log = logging.getLogger("runner")


def _cpus(cpus) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def run(cfg: DictConfig, run_dir: str, invocation: Invocation = ALONE) -> dict:
    """bench.json's figures: the bound and every pipeline in every precision (and tf_data on a tf.data service of
    each of bench.service_workers)."""
    if cfg.bench.service_cpus:
        mine = os.sched_getaffinity(0)
        pin_process(mine - set(cfg.bench.service_cpus))
        log.info("bench.service_cpus=%s: the service's workers run on CPU(s) %s, this process (the trainer: the "
                 "bound and every pipeline) on %s", list(cfg.bench.service_cpus), _cpus(cfg.bench.service_cpus),
                 _cpus(os.sched_getaffinity(0)))
    dataset = prepared_dataset(cfg)
    from runner.engine.topology import Topology
    from runner.perf.bench import bench
    from runner.run.build import build_parts, describe, placement  # TensorFlow, once the data files are ready
    from runner.run.runs import naming_damaged_records

    names = bench_pipelines(cfg)
    precisions = list(cfg.bench.precisions or [cfg.hardware.precision])
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    def make_parts(name: str, precision: str, service: str | None = None):
        """New parts each time: a pipeline holds the tensors of the graph it was built in (preloaded's data);
        ``service``: a dispatcher's address, which the pipeline (tf_data) reads its training batches from."""
        chosen = with_pipeline(cfg, name, precision)
        if service is not None:
            chosen = chosen.copy()
            with open_dict(chosen):
                chosen.pipeline.service, chosen.pipeline.job_name = service, None
        run = settings(chosen)
        return build_parts(run, dataset, Topology(placement(run.hardware, invocation.parallel_jobs)))

    describe(settings(cfg), make_parts(names[0], precisions[0]), run_dir)

    with naming_damaged_records(dataset, invocation.overrides):
        run = settings(cfg)
        return bench(make_parts, names, precisions, run, run_dir, recorded(run),
                     serve=lambda workers: local_service(workers, run.bench.service_cpus))
