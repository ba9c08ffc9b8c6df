"""Sweep reports: report.md, report.csv, report.json, one PNG plot per swept parameter and TensorBoard HParams
summaries (runner.sweeps.hparams), in the sweep dir.

Jobs that differ only in ``report.replicate_over`` (the seed) are repeats of one setting: the report gives each
group its mean and interval per metric and compares it with the best group (runner.sweeps.groups). Written at the
end of every multirun by :class:`SweepReport` (a Hydra callback); ``python -m runner.report DIR [DIR ...]`` writes
it again for any past sweep, or for several together (sweeps run on other days or machines), grouped the same way.
Failed jobs are listed with the last line of their error.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from runner import tfload
from runner.config.checks import check_report
from runner.errors import ConfigError
from runner.sweeps import groups as grouping
from runner.sweeps import hparams, plots, sweep

log = logging.getLogger("runner")


@dataclass(frozen=True)
class Settings:
    """What a report groups over and compares on: conf/config.yaml's ``report`` and ``sweep_objective``."""

    replicate_over: tuple[str, ...] = ("seed",)
    compare: tuple[str, ...] | None = None  # None: the objective, or the main precision
    objective: str | None = None

    @classmethod
    def of(cls, config) -> Settings:
        """From a composed config (the sweep's) or a job's saved one, as a dict."""
        report = (config or {}).get("report") or {}
        compare = report.get("compare")
        return cls(tuple(report.get("replicate_over", cls.replicate_over) or ()),
                   tuple(compare) if compare else None, (config or {}).get("sweep_objective"))


def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")
            if p.parent.name == ".hydra" and p.parent.parent != sweep_dir]
    return sorted(jobs, key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(sweep_dir).parts])


def _saved_config(job: Path) -> dict:
    path = job / ".hydra" / "config.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {} if path.exists() else {}
    except yaml.YAMLError:
        return {}


def saved_settings(sweep_dirs: list[Path]) -> Settings:
    """The report settings the sweeps ran with: their first job's saved config's."""
    first = next((j for d in sweep_dirs for j in _job_dirs(d)), None)
    return Settings.of(_saved_config(first) if first else {})


def collect(sweep_dir: str | Path, replicate_over: tuple[str, ...] = ("seed",), label: str = "") -> list[dict]:
    """One row per job: its overrides, status, error, final precisions, examples/sec, wall time, and its replicate
    (the values of ``replicate_over``, from its overrides or else its saved config). ``label`` prefixes job names
    (several sweep dirs reported together)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job in _job_dirs(sweep_dir):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        params = dict(o.split("=", 1) for o in overrides if "=" in o)
        by_key = {grouping.bare(k): v for k, v in params.items()}
        config = OmegaConf.create(_saved_config(job) if any(k not in by_key for k in replicate_over) else {})
        name = str(job.relative_to(sweep_dir))
        row = {"job": f"{label}/{name}" if label else name, "overrides": " ".join(overrides), "params": params,
               "status": "incomplete", "error": "", "path": job,
               "replicate": tuple(str(by_key[k] if k in by_key else OmegaConf.select(
                   config, k, throw_on_resolution_failure=False)) for k in replicate_over)}
        summary, bench, error, stopped = (job / "summary.json", job / "bench.json", job / "error.txt",
                                          job / "interrupted.txt")
        if summary.exists():
            s = json.loads(summary.read_text())
            row.update(status="completed", steps=s["steps"], examples_per_sec=s["examples_per_sec"],
                       wall_time_sec=s["wall_time_sec"])
            row.update({f"precision_{k}": v for k, v in s["final_precision"].items()})
        elif bench.exists():
            b = json.loads(bench.read_text())
            row.update(status="completed", bound_examples_per_sec=b["bound_examples_per_sec"],
                       wall_time_sec=b.get("wall_time_sec"))
            for name, p in b["pipelines"].items():
                row[f"{name}_ratio_to_bound"] = p["ratio_to_bound"]
        if error.exists():
            row.update(status="failed", error=error.read_text().strip().splitlines()[-1])
        elif stopped.exists():
            row.update(status="interrupted", error=stopped.read_text().strip().splitlines()[-1])
        rows.append(row)
    return rows


FIXED = ["job", "overrides", "status"]
INTERNAL = {"params", "error", "path", "replicate"}


def _metrics(rows: list[dict]) -> list[str]:
    """The columns of numbers the jobs reported, precisions first."""
    return sorted({k for r in rows for k in r} - set(FIXED) - INTERNAL,
                  key=lambda k: (not k.startswith("precision"), k))


def _columns(rows: list[dict]) -> list[str]:
    return FIXED + _metrics(rows) + ["error"]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def swept_parameters(rows: list[dict], replicate_over: tuple[str, ...] = ()) -> list[str]:
    """The overrides whose values differ between jobs, the replicate keys left out (a plot against the seed says
    nothing)."""
    keys = sorted({k for r in rows for k in r["params"]})
    return [k for k in keys if len({r["params"].get(k) for r in rows}) > 1
            and grouping.bare(k) not in {grouping.bare(o) for o in replicate_over}]


def _labels(sweep_dirs: list[Path]) -> list[str]:
    """Names for several sweep dirs' jobs: each dir's own name, or its path where two names are the same."""
    names = [d.name for d in sweep_dirs]
    return [d.name if names.count(d.name) == 1 else str(d).strip("/").replace("/", "_") for d in sweep_dirs]


def write(sweep_dirs: str | Path | list, out: str | Path | None = None, settings: Settings | None = None
          ) -> list[dict]:
    """Writes report.md, report.csv, report.json and plot_<param>.png into ``out`` (a single sweep dir's report:
    the dir itself), and the HParams events; returns the rows."""
    dirs = [Path(d) for d in (sweep_dirs if isinstance(sweep_dirs, list) else [sweep_dirs])]
    out = Path(out) if out is not None else dirs[0]
    if len(dirs) > 1 and out in dirs:
        raise ValueError("several sweep dirs are reported into a folder of their own")
    if settings is None:
        settings = saved_settings(dirs)
    labels = _labels(dirs) if len(dirs) > 1 else [""]
    rows = [row for d, label in zip(dirs, labels) for row in collect(d, settings.replicate_over, label)]
    out.mkdir(parents=True, exist_ok=True)
    columns, metrics = _columns(rows), _metrics(rows)
    with (out / "report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    found = grouping.group(rows, list(settings.replicate_over))
    compared = [m for m in grouping.compared_metrics(rows, settings.compare, settings.objective)
                if any(m in r for r in rows)]
    repeated = any(len(g.done(m)) >= 2 for g in found for m in metrics)
    plotted = []
    for param in swept_parameters(rows, settings.replicate_over) if compared else []:
        path = out / f"plot_{param.replace('/', '_')}.png"
        plots.plot(found, param, compared[0], path)
        plotted.append(path.name)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("completed", "failed", "interrupted")}
    title = f"# Sweep report: {dirs[0]}" if len(dirs) == 1 else f"# Report of {len(dirs)} sweeps: " + ", ".join(
        f"{d} ({label})" for d, label in zip(dirs, labels))
    lines = [title, "",
             f"{len(rows)} jobs, {counts['completed']} completed, {counts['failed']} failed, "
             f"{counts['interrupted']} interrupted, {len(rows) - sum(counts.values())} incomplete.", ""]
    stats = grouping.stats_metrics(metrics)
    if repeated:
        lines += grouping.markdown(found, stats, compared, list(settings.replicate_over)) + [""]
    elif len(rows) > 1:
        lines += ["Each setting ran once, so no difference here can be told from seed noise: repeat each over seeds "
                  "(add seed=range(5) to the sweep) for intervals and comparisons.", ""]
    lines += ["## Jobs", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    if plotted:
        lines += ["", f"Main metric: `{compared[0]}`.", ""] + [f"![{p}]({p})" for p in plotted]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    table = [{k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in r.items()}
             for r in rows]
    (out / "report.json").write_text(json.dumps({
        "sweep_dirs": [str(d) for d in dirs], "replicate_over": list(settings.replicate_over), "jobs": table,
        **grouping.as_json(found, stats, compared)}, indent=2) + "\n")
    events_dir = (lambda r: r["path"]) if len(dirs) == 1 and out == dirs[0] else (lambda r: out / r["job"])
    hparams.write(out, rows, metrics, found, events_dir, settings.replicate_over)
    return rows


class SweepReport(Callback):
    """Forwards stop signals to the sweep's jobs, writes the report when the multirun ends, and exits 128 + signal
    when a signal stopped it, or 1 when a job failed (after all jobs ran)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        try:  # what the whole sweep reports on is checked once, before any job or sweep dir
            check_report(config)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        tfload.quiet_children(bool(config.get("verbose")))  # before the launcher starts any job's process
        if not sys.stdout.isatty():
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's job lines: no colour codes in a file or pipe
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep.clear(sweep_dir)  # a rerun continues the sweep
        sweep.clear_stale(sweep_dir)
        sweep.forward_signals(sweep_dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = write(sweep_dir, settings=Settings.of(config))
        failed = [r for r in rows if r["status"] == "failed"]
        log.info("Sweep report: %s", sweep_dir / "report.md")
        signum = sweep.clear(sweep_dir)
        if signum is not None:
            stopped = [r["job"] for r in rows if r["status"] == "interrupted"]
            log.error("stopped: %s; %d job(s) interrupted (%s). Rerun the same command to continue them.",
                      signal.Signals(signum).name, len(stopped), ", ".join(stopped))
            sys.exit(128 + signum)
        if failed:
            log.error("%d of %d jobs failed: %s", len(failed), len(rows), ", ".join(r["job"] for r in failed))
            sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """``python -m runner.report SWEEP_DIR [SWEEP_DIR ...]``: a sweep's report written again, or several sweeps'
    jobs reported together (into --out, ./report by default), grouped the same way."""
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=main.__doc__)
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="where several sweeps' report goes (default: ./report)")
    parser.add_argument("--replicate-over", help="comma-separated keys whose values are repeats of one setting "
                                                 "(default: the sweeps' report.replicate_over, seed)")
    parser.add_argument("--compare", help="comma-separated metrics to compare groups on (default: the sweeps' "
                                          "report.compare, else the objective or the main precision)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for d in args.sweep_dirs:
        if not d.is_dir() or not _job_dirs(d):
            parser.error(f"{d} is not a sweep dir (no job folders with .hydra/overrides.yaml)")
    out = args.out or (args.sweep_dirs[0] if len(args.sweep_dirs) == 1 else Path("report"))
    if len(args.sweep_dirs) > 1 and out.resolve() in [d.resolve() for d in args.sweep_dirs]:
        parser.error(f"--out {out}: several sweeps' report goes into a folder of its own, not one of the sweeps")
    base = saved_settings(args.sweep_dirs)
    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    settings = Settings(split(args.replicate_over) if args.replicate_over is not None else base.replicate_over,
                        split(args.compare) if args.compare else base.compare, base.objective)
    written = write(args.sweep_dirs, out, settings)
    print(f"{out / 'report.md'}: {len(written)} jobs from {len(args.sweep_dirs)} sweep dir(s)")
