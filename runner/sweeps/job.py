"""One job of a sweep, kept by its sweep: skipped when the sweep was stopped or the job finished in an earlier run of
the same sweep (its summary read back), and a failure or a stop recorded in the job dir (error.txt,
interrupted.txt) for the report, while the sweep goes on or stops."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.core.errors import RunDirInUse, RunnerError, as_runner_error, describe_os_error
from runner.core.files import write_text
from runner.core.signals import Interrupted
from runner.records.rundirs import PRUNED
from runner.run import rundir
from runner.sweeps import sweep
from runner.sweeps.search import Pruned

log = logging.getLogger("runner")


def job(cfg: DictConfig, sweep_dir: Path, job_dir: Path, run: Callable[[DictConfig, str], Any]) -> Any:
    """One job of a sweep: skipped when the sweep was stopped or the job finished in an earlier run of the same
    sweep; a failure or a stop is recorded in the job dir (and in the report) and the sweep goes on or stops.
    ``run(cfg, job_dir)`` runs it (the command line's run: validated, then its mode)."""
    if (job_dir / PRUNED).is_file():  # its trial was pruned in an earlier run of this search: it stays pruned
        log.info("Job %s was pruned in an earlier run of this search: skipped", job_dir.name)
        return {"status": "pruned"}
    for name in ("error.txt", "interrupted.txt"):
        (job_dir / name).unlink(missing_ok=True)
    if sweep.interrupted(sweep_dir) is not None:
        _note(job_dir / "interrupted.txt", "not started: the sweep was stopped\n")
        return {"status": "interrupted"}
    finished = _finished(cfg, job_dir)
    if finished is not None:
        log.info("Job %s finished in an earlier run of this sweep: skipped", job_dir.name)
        return finished
    with sweep.job(sweep_dir, job_dir.name):
        try:
            return run(cfg, str(job_dir))
        except RunDirInUse as err:  # the same sweep running in another process has this job: it is left to it
            log.warning("Job %s: %s; left to that process", job_dir.name, err)
            return {"status": "busy"}
        except Pruned as err:
            log.info("Job %s: %s; its checkpoint is kept", job_dir.name, err)
            _note(job_dir / PRUNED, f"{err}\n")
            return {"status": "pruned"}
        except Interrupted as err:
            sweep.mark(sweep_dir, err.signum)
            log.error("stopped: %s", err)
            _note(job_dir / "interrupted.txt", f"{err}\n")
            return {"status": "interrupted"}
        except Exception as err:
            # Record the failure in the job dir and let the sweep go on; the report lists it and the sweep's exit
            # status says some jobs failed.
            err = as_runner_error(err)
            if not isinstance(err, RunnerError):
                log.exception("job failed")
            message = f"{type(err).__name__}: {err}".strip().splitlines()[-1]
            log.error("error: %s", message)
            _note(job_dir / "error.txt", message + "\n")
            return {"status": "failed", "error": message}


def _note(path: Path, text: str) -> None:
    """A job's error.txt or interrupted.txt, whole or not at all; a full disk loses the note (said in the log), never
    the sweep."""
    try:
        write_text(path, text)
    except OSError as err:
        log.error("could not write %s: %s", path, describe_os_error(err) or err)


def _finished(cfg: DictConfig, job_dir: Path) -> dict | float | None:
    """The result of a job that an earlier run of this sweep completed with the same config, else None (a result
    file that cannot be read, or a bench stopped midway, is a job to run again)."""
    summary_path = job_dir / ("summary.json" if cfg.mode == "train" else "bench.json")
    if cfg.mode not in ("train", "bench") or not summary_path.exists():
        return None
    try:
        summary = json.loads(summary_path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        log.warning("Job %s: %s cannot be read (%s): the job runs again", job_dir.name, summary_path.name, err)
        return None
    if cfg.mode == "train" and not (summary.get("steps", 0) >= cfg.max_steps or summary.get("stopped_early")):
        return None
    if "interrupted" in summary:
        return None
    if cfg.mode == "bench":  # the same measurement: its saved config (.hydra/bench) as this job's, run_dir aside
        saved = job_dir / ".hydra" / "bench" / "config.yaml"
        if not saved.exists() or set(rundir.changes(OmegaConf.load(saved), cfg)) - {"run_dir"}:
            return None
    elif not (job_dir / rundir.SAVED_CONFIG).exists() or rundir.unsafe_changes(job_dir, cfg):
        return None
    if cfg.get("sweep_objective"):
        return sweep.objective(summary, cfg.sweep_objective)
    return summary
