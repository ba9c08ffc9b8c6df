"""TensorBoard HParams summaries of a sweep, written with its report: each job's overrides as its hparams and its
final numbers as ``final/...`` scalars (events in the job's dir), and the sweep's hparams and metrics (events in the
sweep dir), so ``make tensorboard RUN=SWEEP_DIR`` compares the jobs in the HParams dashboard. Repeats of one setting
(jobs that differ only in ``report.replicate_over``) are one session group, which the dashboard shows with the mean
of its jobs, each job still listed in it. Several sweeps reported together get these events in the report's folder,
a folder per job. Needs the tensorboard extra; without it the report says so once and writes the rest. Rewriting
the report replaces these files."""
from __future__ import annotations

import logging
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from runner.config.hydra import override_key
from runner.sweeps.groups import Group

log = logging.getLogger("runner")
SUFFIX = ".hparams"  # the event files written here end so; a rewrite removes the old ones
Value = bool | int | float | str


def parse(overrides: list[str]) -> dict[str, Value]:
    """A job's overrides as typed hparams (Hydra's own override parser): ``batch_size=64`` -> 64; a value that is
    no number, bool or string (a list, null) is kept as written."""

    params = {}
    for override, text in zip(OverridesParser.create().parse_overrides(overrides), overrides):
        if not override.is_delete():
            value = override.value()
            plain = isinstance(value, (bool, int, float, str))
            params[override.key_or_group] = value if plain else text.split("=", 1)[1]
    return params


def write(sweep_dir: Path, rows: list[dict], columns: list[str], groups: list[Group],
          events_dir: Callable[[dict], Path], replicate_over: tuple[str, ...]) -> bool:
    """Writes the HParams events of the report's rows (runner.sweeps.report.collect) with its number ``columns`` as
    metrics: the experiment in ``sweep_dir``, each job's session in ``events_dir(row)``, a session group per group
    of repeats, named by its label, without the replicate keys among its hparams. False without TensorBoard."""
    if "tensorflow" not in sys.modules:
        # TensorBoard's own switch to its TensorFlow stub: a sweep's process (its report) then writes these events
        # without loading TensorFlow, seconds faster. (Where a job ran in this process TensorFlow is loaded anyway.)
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        log.info("HParams summaries need TensorBoard: pip install -e '.[tensorboard]' (make install includes it), "
                 "then python -m runner.report %s", sweep_dir)
        return False

    def write_events(directory: Path, *events) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"events.out.tfevents.*{SUFFIX}"):
            old.unlink()
        writer = EventFileWriter(str(directory), filename_suffix=SUFFIX)
        for event in events:
            writer.add_event(event)
        writer.close()

    metrics = [k for k in columns if any(_is_number(r.get(k)) for r in rows)]
    params: dict[str, list[Value]] = {}
    now = time.time()
    label = {id(r): g.label for g in groups for r in g.rows}
    skip = {override_key(k) for k in replicate_over}
    for row in rows:
        overrides = row["override_list"]  # as the report read them
        hparams = {k: v for k, v in parse(overrides).items() if override_key(k) not in skip}
        for key, value in hparams.items():
            params.setdefault(key, [])
            if value not in params[key]:
                params[key].append(value)
        numbers = [summary_pb2.Summary.Value(tag=f"final/{k}", simple_value=float(row[k]))
                   for k in metrics if _is_number(row.get(k))]
        write_events(events_dir(row),
                     event_pb2.Event(wall_time=now, step=0, summary=hp.hparams_pb(hparams, trial_id=label[id(row)])),
                     event_pb2.Event(wall_time=now, step=int(row.get("steps") or 0),
                                     summary=summary_pb2.Summary(value=numbers)))
    domains = [hp.HParam(key, _domain(hp, values)) for key, values in sorted(params.items())]
    config = hp.hparams_config_pb(domains, [hp.Metric(f"final/{k}", display_name=k) for k in metrics])
    write_events(sweep_dir, event_pb2.Event(wall_time=now, step=0, summary=config))
    return True


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _domain(hp, values: list[Value]):
    """Discrete values of one type (TensorBoard's domains are typed); mixed types get none."""
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, (int, float)) else str for v in values}
    if len(kinds) != 1:
        return None
    return hp.Discrete(sorted(float(v) for v in values) if kinds == {float} else sorted(values))
