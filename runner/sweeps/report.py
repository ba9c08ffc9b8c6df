"""Sweep reports: report.md, report.csv, one PNG plot per swept parameter and TensorBoard HParams summaries
(runner.hparams), in the sweep dir.

Written at the end of every multirun by :class:`SweepReport` (a Hydra callback); ``python -m runner.report DIR``
rebuilds it for any past sweep. Failed jobs are listed with the last line of their error.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from runner import tfload
from runner.config.schema import SPLITS
from runner.sweeps import hparams, sweep

log = logging.getLogger("runner")


def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")
            if p.parent.name == ".hydra" and p.parent.parent != sweep_dir]
    return sorted(jobs, key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(sweep_dir).parts])


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per job: its overrides, status, error, final precisions, examples/sec, wall time."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job in _job_dirs(sweep_dir):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        row = {"job": str(job.relative_to(sweep_dir)), "overrides": " ".join(overrides),
               "params": dict(o.split("=", 1) for o in overrides if "=" in o), "status": "incomplete", "error": ""}
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


def _metrics(rows: list[dict]) -> list[str]:
    """The columns of numbers the jobs reported, precisions first."""
    return sorted({k for r in rows for k in r} - set(FIXED) - {"params", "error"},
                  key=lambda k: (not k.startswith("precision"), k))


def _columns(rows: list[dict]) -> list[str]:
    return FIXED + _metrics(rows) + ["error"]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def main_metric(rows: list[dict]) -> str | None:
    for key in [f"precision_{s}" for s in reversed(SPLITS)] + ["examples_per_sec", "bound_examples_per_sec"]:
        if any(key in r for r in rows):
            return key
    return None


def swept_parameters(rows: list[dict]) -> list[str]:
    keys = sorted({k for r in rows for k in r["params"]})
    return [k for k in keys if len({r["params"].get(k) for r in rows}) > 1]


def _plot(rows: list[dict], param: str, metric: str, path: Path) -> None:
    import matplotlib  # a second's import, for sweeps that plot: after the jobs, in the sweep's process

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "completed" and metric in r]
    values = [r["params"].get(param, "") for r in done]
    try:
        xs = [float(v) for v in values]
        categorical = False
    except ValueError:
        labels = sorted(set(values))
        xs = [labels.index(v) for v in values]
        categorical = True
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, [r[metric] for r in done])
    if categorical:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(sweep_dir: str | Path) -> list[dict]:
    """Writes report.csv, report.md and plot_<param>.png into sweep_dir; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    columns = _columns(rows)
    with (sweep_dir / "report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    metric = main_metric(rows)
    plots = []
    if metric:
        for param in swept_parameters(rows):
            path = sweep_dir / f"plot_{param.replace('/', '_')}.png"
            _plot(rows, param, metric, path)
            plots.append(path.name)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("completed", "failed", "interrupted")}
    lines = [f"# Sweep report: {sweep_dir}", "",
             f"{len(rows)} jobs, {counts['completed']} completed, {counts['failed']} failed, "
             f"{counts['interrupted']} interrupted, {len(rows) - sum(counts.values())} incomplete.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    if plots:
        lines += ["", f"Main metric: `{metric}`.", ""] + [f"![{p}]({p})" for p in plots]
    (sweep_dir / "report.md").write_text("\n".join(lines) + "\n")
    hparams.write(sweep_dir, rows, _metrics(rows))
    return rows


class SweepReport(Callback):
    """Forwards stop signals to the sweep's jobs, writes the report when the multirun ends, and exits 128 + signal
    when a signal stopped it, or 1 when a job failed (after all jobs ran)."""

    def on_multirun_start(self, config, **kwargs) -> None:
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
        rows = write(sweep_dir)
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
    """``python -m runner.report SWEEP_DIR``: writes the sweep's report again."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        sys.exit("usage: python -m runner.report SWEEP_DIR")
    written = write(args[0])
    print(f"{Path(args[0]) / 'report.md'}: {len(written)} jobs")
