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
import io
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

from runner.config.checks import check_report
from runner.config.hydra import override_key
from runner.core import tfload
from runner.core.errors import ConfigError, describe_os_error
from runner.core.files import write_json, write_text
from runner.core.results import BENCH, SUMMARY, columns
from runner.records import tracking
from runner.records.rundirs import noted
from runner.sweeps import groups as grouping
from runner.sweeps import hparams, plots, study_report, sweep
from runner.sweeps.search import check_search

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
    """The job folders of a sweep dir: those with Hydra's overrides.yaml, in .hydra/ (training) or .hydra/MODE/
    (mode=bench, ...); a resumed run's .hydra/resumes/N are the same job."""
    found = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml") if p.parent.name == ".hydra"]
    found += [p.parent.parent.parent for p in sweep_dir.glob("**/.hydra/*/overrides.yaml")
              if p.parent.parent.name == ".hydra" and p.parent.name != "resumes"]
    jobs = sorted({j for j in found if j != sweep_dir and ".hydra" not in j.relative_to(sweep_dir).parts})
    # 0, 1, ..., 10 in number order; a folder of another name (a copy, 0_backup) after them, by name
    return sorted(jobs, key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s)
                                       for s in p.relative_to(sweep_dir).parts])


class Unreadable(ValueError):
    """A job's result file that is not what runner writes: the job is listed as unreadable, not averaged in."""


def _read_result(path: Path, numbers: dict[str, type]) -> dict:
    """A job's summary.json or bench.json: a regular file (not a link), a JSON object, with these keys numbers."""
    if path.is_symlink() or not path.is_file():
        raise Unreadable(f"{path.name} is a link or not a file")
    try:
        data = json.loads(path.read_text(errors="strict"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise Unreadable(f"{path.name} is not JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise Unreadable(f"{path.name} is not a JSON object")
    for key, kind in numbers.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Unreadable(f"{path.name}: {key} is {value!r}, not a number")
    return data


def _last_line(path: Path, limit: int = 4096) -> str:
    """The last line of a (possibly huge) text file, read from its end."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - limit))
        lines = f.read().decode(errors="replace").strip().splitlines()
    return lines[-1][:500] if lines else "(no message)"


def _hydra_file(job: Path, name: str) -> Path:
    """A job's Hydra file (config.yaml, overrides.yaml, hydra.yaml): in .hydra/, or in .hydra/MODE/ for a job of
    another mode (bench)."""
    path = job / ".hydra" / name
    return path if path.exists() else next(iter(sorted(job.glob(f".hydra/*/{name}"))), path)


def _saved_config(job: Path) -> dict:
    path = _hydra_file(job, "config.yaml")
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
        try:
            overrides = yaml.safe_load(_hydra_file(job, "overrides.yaml").read_text()) or []
            overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            overrides = []
        params = dict(o.split("=", 1) for o in overrides if "=" in o)
        by_key = {override_key(k): v for k, v in params.items()}
        config = OmegaConf.create(_saved_config(job) if any(k not in by_key for k in replicate_over) else {})
        name = str(job.relative_to(sweep_dir))
        row = {"job": f"{label}/{name}" if label else name, "overrides": " ".join(overrides), "params": params,
               "override_list": overrides,
               "status": "incomplete", "error": "", "path": job,
               "replicate": tuple(str(by_key[k] if k in by_key else OmegaConf.select(
                   config, k, throw_on_resolution_failure=False)) for k in replicate_over)}
        summary, bench = job / "summary.json", job / "bench.json"
        try:
            if summary.exists() or summary.is_symlink():
                s = _read_result(summary, {"steps": int, "examples_per_sec": (int, float),
                                           "wall_time_sec": (int, float)})
                precision = s.get("final_precision") or {}
                if not isinstance(precision, dict) or not all(isinstance(v, (int, float)) for v in precision.values()):
                    raise Unreadable("summary.json: final_precision is not a mapping of splits to numbers")
                row.update(status="completed", **columns(s, SUMMARY))
                if isinstance(s.get("early_stopping"), dict):  # completed before max_steps: the step it stopped at
                    row["stopped_early_at"] = s["early_stopping"].get("step")
            elif bench.exists() or bench.is_symlink():
                b = _read_result(bench, {"bound_examples_per_sec": (int, float)})
                pipelines = b.get("pipelines")
                if not isinstance(pipelines, dict):
                    raise Unreadable("bench.json: pipelines is not a mapping")
                row.update(status="interrupted" if "interrupted" in b else "completed", **columns(b, BENCH))
        except Unreadable as err:
            row.update(status="unreadable", error=f"{err}; rerun the sweep to run this job again")
        note = noted(job)
        if note is not None:
            row.update(status=note[0], error=_last_line(note[1]))
        rows.append(row)
    return rows


FIXED = ["job", "overrides", "status"]
INTERNAL = {"params", "error", "path", "replicate", "override_list"}


def _metrics(rows: list[dict]) -> list[str]:
    """The columns of numbers the jobs reported, precisions first."""
    return sorted({k for r in rows for k in r} - set(FIXED) - INTERNAL,
                  key=lambda k: (not k.startswith("precision"), k))


def _columns(rows: list[dict]) -> list[str]:
    return FIXED + _metrics(rows) + ["error"]


def _fmt(value) -> str:
    """Numbers as people read them: 18,840 (not 1.884e+04), 5.04, 0.8123."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, float) and math.isnan(value):
        return ""
    if abs(value) >= 1000 or isinstance(value, int):
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"


def _constant_overrides(rows: list[dict]) -> list[str]:
    """The overrides every job has (the sweep's fixed settings), said once above the table."""
    if len(rows) < 2:
        return []
    first = rows[0]["overrides"].split(" ")
    return [o for o in first if o and all(o in r["overrides"].split(" ") for r in rows[1:])]


def _shown_overrides(row: dict, constant: list[str]) -> str:
    return " ".join(o for o in row["overrides"].split(" ") if o not in constant)


def _searched_on_log_scale(sweep_dirs: list[Path]) -> set[str]:
    """Keys a search drew on a log scale (``tag(log, ...)`` in the sweeper's params), from a job's saved hydra
    config: their plots get a log axis."""
    for d in sweep_dirs:
        for job in _job_dirs(d)[:1]:
            try:
                params = (yaml.safe_load(_hydra_file(job, "hydra.yaml").read_text()) or {}).get(
                    "hydra", {}).get("sweeper", {}).get("params") or {}
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            return {override_key(k) for k, v in params.items() if "log" in str(v).split("(", 2)[1:2]
                    or str(v).replace(" ", "").startswith("tag(log")}
    return set()


def swept_parameters(rows: list[dict], replicate_over: tuple[str, ...] = ()) -> list[str]:
    """The overrides whose values differ between jobs, the replicate keys left out (a plot against the seed says
    nothing)."""
    keys = sorted({k for r in rows for k in r["params"]})
    return [k for k in keys if len({r["params"].get(k) for r in rows}) > 1
            and override_key(k) not in {override_key(o) for o in replicate_over}]


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
    table_csv = io.StringIO(newline="")
    writer = csv.DictWriter(table_csv, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "report.csv", table_csv.getvalue())
    found = grouping.group(rows, list(settings.replicate_over))
    if len(dirs) > 1:  # a group from some of the sweeps only says which: its jobs may differ in what no override shows
        for g in found:
            sources = sorted({r["job"].split("/", 1)[0] for r in g.rows})
            if len(sources) < len(dirs):
                g.label += f" [{', '.join(sources)}]"
    compared = [m for m in grouping.compared_metrics(rows, settings.compare, settings.objective)
                if any(m in r for r in rows)]
    repeated = any(len(g.done(m)) >= 2 for g in found for m in metrics)
    plotted = []
    logs = _searched_on_log_scale(dirs)
    for param in swept_parameters(rows, settings.replicate_over) if compared else []:
        path = out / f"plot_{param.replace('/', '_')}.png"
        plots.plot(found, param, compared[0], path, log_scale=True if override_key(param) in logs else None)
        plotted.append(path.name)
    counts = {status: sum(r["status"] == status for r in rows)
              for status in ("completed", "pruned", "failed", "interrupted", "unreadable")}
    title = f"# Sweep report: {dirs[0]}" if len(dirs) == 1 else f"# Report of {len(dirs)} sweeps: " + ", ".join(
        f"{d} ({label})" for d, label in zip(dirs, labels))
    lines = [title, "",
             f"{len(rows)} jobs, {counts['completed']} completed, "
             + (f"{counts['pruned']} pruned, " if counts["pruned"] else "") + f"{counts['failed']} failed, "
             f"{counts['interrupted']} interrupted, {len(rows) - sum(counts.values())} incomplete"
             + (f", {counts['unreadable']} unreadable (listed below)" if counts["unreadable"] else "") + ".", ""]
    if len(dirs) == 1:
        lines += study_report.section(dirs[0], out, rows)
    stats = grouping.stats_metrics(metrics)
    if repeated:
        lines += grouping.markdown(found, stats, compared, list(settings.replicate_over)) + [""]
    elif len(rows) > 1:
        lines += ["Each setting ran once, so no difference here can be told from seed noise: repeat each over seeds "
                  "(add seed=range(5) to the sweep) for intervals and comparisons.", ""]
    constant = _constant_overrides(rows)
    lines += ["## Jobs", ""] + ([f"Every job: `{' '.join(constant)}`; each row shows the rest.", ""] if constant
                                else [])
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(_shown_overrides(r, constant) if c == "overrides" else r.get(c)).replace(
        "|", "\\|") for c in columns) + " |" for r in rows]
    if plotted:
        lines += ["", f"Main metric: `{compared[0]}`.", ""] + [f"![{p}]({p})" for p in plotted]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    table = [{k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in r.items()}
             for r in rows]
    write_json(out / "report.json", {
        "sweep_dirs": [str(d) for d in dirs], "replicate_over": list(settings.replicate_over), "jobs": table,
        **grouping.as_json(found, stats, compared)})
    events_dir = (lambda r: r["path"]) if len(dirs) == 1 and out == dirs[0] else (lambda r: out / r["job"])
    hparams.write(out, rows, metrics, found, events_dir, settings.replicate_over)
    return rows


class SweepReport(Callback):
    """Forwards stop signals to the sweep's jobs, writes the report when the multirun ends, and exits 128 + signal
    when a signal stopped it, or 1 when a job failed (after all jobs ran)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        try:  # what the whole sweep reports on is checked once, before any job or sweep dir
            check_report(config)
            check_search(config, list(config.hydra.overrides.task))
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
        tracking.sweep_started(config.tracking, sweep_dir, Path(config.hydra.runtime.cwd), _experiment(config),
                               list(config.hydra.overrides.task))

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = write(sweep_dir, settings=Settings.of(config))
        failed = [r for r in rows if r["status"] == "failed"]
        log.info("Sweep report: %s", sweep_dir / "report.md")
        signum = sweep.clear(sweep_dir)
        tracking.sweep_ended(config.tracking, sweep_dir, Path(config.hydra.runtime.cwd), _experiment(config),
                             stopped=signum is not None)
        if signum is not None:
            stopped = [r["job"] for r in rows if r["status"] == "interrupted"]
            log.error("stopped: %s; %d job(s) interrupted (%s). Rerun the same command to continue them.",
                      signal.Signals(signum).name, len(stopped), ", ".join(stopped))
            sys.exit(128 + signum)
        if failed:
            log.error("%d of %d jobs failed: %s", len(failed), len(rows), ", ".join(r["job"] for r in failed))
            sys.exit(1)


def _experiment(config) -> str | None:
    """The experiment the sweep runs (experiment=NAME), if any."""
    return config.hydra.runtime.choices.get("experiment")


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
    try:
        written, out = _report(args)
    except (ConfigError, OSError) as err:
        said = describe_os_error(err) if isinstance(err, OSError) else None
        print(f"error: {said or err}", file=sys.stderr)
        sys.exit(2)
    print(f"{out / 'report.md'}: {len(written)} jobs from {len(args.sweep_dirs)} sweep dir(s)")


def _report(args: argparse.Namespace) -> tuple[list[dict], Path]:
    """The report the command line asks for, its sweep dirs and settings checked first."""
    seen: dict[Path, Path] = {}
    for d in args.sweep_dirs:
        if not d.is_dir() or not _job_dirs(d):
            raise ConfigError(f"{d} is not a sweep dir (no job folders with .hydra/overrides.yaml)")
        if d.resolve() in seen:
            raise ConfigError(f"{d} is given twice ({seen[d.resolve()]}): each sweep dir once, or its jobs would "
                              f"count twice")
        seen[d.resolve()] = d
    jobs = [j.resolve() for d in args.sweep_dirs for j in _job_dirs(d)]
    twice = sorted({j for j in jobs if jobs.count(j) > 1})
    if twice:
        raise ConfigError(f"the job {twice[0]} is in two of the sweep dirs given (one holds the other): give each "
                          f"sweep once")
    out = args.out or (args.sweep_dirs[0] if len(args.sweep_dirs) == 1 else Path("report"))
    if len(args.sweep_dirs) > 1 and out.resolve() in seen:
        raise ConfigError(f"--out {out}: several sweeps' report goes into a folder of its own, not one of the "
                          f"sweeps")
    blocked = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"--out {out}: {blocked} is a file, not a folder; choose another --out")
    base = saved_settings(args.sweep_dirs)
    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    settings = Settings(split(args.replicate_over) if args.replicate_over is not None else base.replicate_over,
                        split(args.compare) if args.compare else base.compare, base.objective)
    _check_settings(args.sweep_dirs, settings, bool(args.replicate_over), bool(args.compare))
    return write(args.sweep_dirs, out, settings), out


def _check_settings(sweep_dirs: list[Path], settings: Settings, replicate: bool, compare: bool) -> None:
    """--replicate-over names keys of the jobs' configs; --compare names numbers the jobs report."""
    rows = [row for d in sweep_dirs for row in collect(d, ())]
    if compare:
        reported = set(_metrics(rows))
        for metric in settings.compare or ():
            if metric not in reported:
                raise ConfigError(f"--compare {metric}: no job reports it; the jobs report: "
                                  f"{', '.join(sorted(reported)) or 'nothing yet'}")
    if replicate:
        for key in settings.replicate_over:
            if not any(override_key(k) == key for r in rows for k in r["params"]) and not any(
                    OmegaConf.select(OmegaConf.create(_saved_config(r["path"])), key,
                                     throw_on_resolution_failure=False) is not None for r in rows):
                raise ConfigError(f"--replicate-over {key}: no job sets it (not in their overrides or saved "
                                  f"configs); give keys such as seed")
