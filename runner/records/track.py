"""``python -m runner.records.track [PATH ...]``: run dirs and sweep dirs logged to MLflow afterwards: runs made before
tracking was on, and whatever a run could not log while it ran (a store that was down). Idempotent: a run already
logged is matched (by its dir's tracking.json, or the uid its MLflow run carries) and given only what it lacks.

Each dir goes to the store and experiment it was run with (its tracking.uri and tracking.experiment, else the
default store, mlflow.db in this folder, and the experiment it ran, else ``runner``); --uri and --experiment name
others.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.config.schema import TRACKING_SCHEMES
from runner.records import tracking
from runner.records.rundirs import find, read


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _sweeps(roots: list[Path]) -> list[Path]:
    found = {root for root in roots if tracking.is_sweep_dir(root)}
    found |= {p.parent for root in roots for p in root.glob(f"**/{tracking.SWEEP}") if ".hydra" not in p.parts}
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.records.track", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="run dirs, sweep dirs, or folders holding them (default: outputs and multirun here)")
    parser.add_argument("--uri", help="the store (default: each run's tracking.uri, else sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", help="the MLflow experiment (default: each run's, else runner)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        _fail(f"{', '.join(missing)}: not a folder; give run dirs, sweep dirs or folders holding them")
    roots = args.paths or [p for p in (Path("outputs"), Path("multirun")) if p.is_dir()]
    if args.uri is not None and ("://" not in args.uri or args.uri.split("://")[0] not in TRACKING_SCHEMES):
        _fail(f"--uri {args.uri} is not a tracking store's URI; give http://HOST:PORT or sqlite:///PATH")
    sweeps = _sweeps(roots)
    jobs = {job: sweep for sweep in sweeps for job in tracking.jobs_of(sweep)}
    runs = [p for p in dict.fromkeys(find(roots)) if p not in jobs and p not in sweeps]
    if not sweeps and not jobs and not runs:
        _fail(f"no run dirs under {', '.join(map(str, roots)) or 'this folder (no outputs/ or multirun/)'}")
    targets: dict[tuple[str, str], tracking.Target] = {}

    def target(path: Path) -> tracking.Target:
        config = read(path).config if not tracking.is_sweep_dir(path) else tracking.sweep_config(path)
        chosen = config.get("tracking") or {}
        uri = args.uri or tracking.store_uri(chosen.get("uri") if chosen.get("name") == "mlflow" else None)
        key = (uri, args.experiment or tracking.experiment_of(path, config))
        if key not in targets:
            targets[key] = tracking.Target.open(*key)
        return targets[key]

    counts = {"new": 0, "matched": 0}

    def logged(path: Path, log) -> None:
        where = target(path)
        run_id = log(where)
        made = run_id in where.made
        counts["new" if made else "matched"] += 1
        print(f"{path}: {'logged as' if made else 'matched'} run {run_id} (experiment {where.experiment})",
              flush=True)

    try:
        for sweep in sweeps:
            logged(sweep, lambda where, sweep=sweep: tracking.sync_parent(where, sweep))
            for job in tracking.jobs_of(sweep):
                logged(job, lambda where, job=job, sweep=sweep: tracking.sync_job(where, sweep, job))
        for run in runs:
            logged(run, lambda where, run=run: tracking.sync(where, run))
    except tracking.StoreError as err:
        _fail(f"{err}; nothing is lost: run this again when the store answers")
    except OSError as err:
        _fail(f"{err.filename}: {err.strerror}; tracking.json is written in each run dir it logs")
    print(f"{counts['new'] + counts['matched']} run(s): {counts['new']} logged, {counts['matched']} already there "
          f"(brought up to date)")


if __name__ == "__main__":
    main()
