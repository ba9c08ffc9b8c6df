"""``hydra/launcher=parallel``: runner's local parallel launcher. It takes joblib's launcher settings (``n_jobs``,
...) and runs each job in a process of its own, forked from the sweep's process, at most ``n_jobs`` at a time.

One promise more than a joblib pool: a job whose process is killed (kill -9, the kernel's out-of-memory killer) is
recorded as failed, in its job dir and in the report, and the other jobs go on. (A loky pool that loses a worker
kills every other worker and ends the sweep with TerminatedWorkerError.)
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals

from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

log = logging.getLogger(__name__)


class ParallelLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n_jobs = int(self.joblib.get("n_jobs") or 1)
        at_once = max(1, (os.cpu_count() or 1) + 1 + n_jobs if n_jobs < 0 else n_jobs)
        log.info("Launching %d jobs, %d at a time, sweep output dir: %s", len(job_overrides), at_once, sweep_dir)
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        fork = multiprocessing.get_context("fork")
        pending = list(enumerate(job_overrides))
        running: dict[Any, tuple[int, Any, Any]] = {}  # a process's sentinel or pipe -> (index, process, pipe)
        results: list[JobReturn | None] = [None] * len(job_overrides)
        while pending or running:
            while pending and len({i for i, _, _ in running.values()}) < at_once:
                idx, overrides = pending.pop(0)
                reader, writer = fork.Pipe(duplex=False)
                process = fork.Process(target=_child, name=f"job-{initial_job_idx + idx}", args=(
                    writer, initial_job_idx + idx, list(overrides), self.hydra_context, self.config,
                    self.task_function, state))
                process.start()
                writer.close()
                running[reader] = running[process.sentinel] = (idx, process, reader)
            for ready in wait(list(running)):
                if ready not in running:
                    continue
                idx, process, reader = running[ready]
                result = _receive(reader) if ready is reader or reader.poll() else None
                if ready is reader and result is None and process.is_alive():
                    continue  # the pipe closed early; the process's end says how it went
                process.join()
                running.pop(reader, None)
                running.pop(process.sentinel, None)
                reader.close()
                results[idx] = result or _killed(self, sweep_dir, initial_job_idx + idx, job_overrides[idx],
                                                 process.exitcode)
        return [r for r in results if r is not None]


def _child(writer, idx: int, overrides: list[str], hydra_context, config, task_function, state) -> None:
    """A job's process: the job (as Hydra runs one), its result sent back; never the sweep's exit handlers."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # until the job sets its own: not the sweep's forwarding
    code = 0
    try:
        writer.send(_portable(execute_job(idx, overrides, hydra_context, config, task_function, state)))
    except BaseException:  # noqa: BLE001  said by the job's log; the sweep records the job as failed
        logging.getLogger("runner").exception("job %d failed", idx)
        code = 1
    finally:
        writer.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _portable(ret: JobReturn) -> JobReturn:
    """What the sweep needs of a job's return, fit to cross a pipe: its configs are left out (they hold classes of
    Hydra's plug-ins, which do not pickle), and an exception that does not pickle becomes its message."""
    value = ret._return_value
    if isinstance(value, BaseException):
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001  an exception's own state need not pickle; its message does
            value = RuntimeError(f"{type(value).__name__}: {value}")
    return JobReturn(overrides=ret.overrides, status=ret.status, _return_value=value, task_name=ret.task_name,
                     working_dir=ret.working_dir)


def _receive(reader) -> JobReturn | None:
    try:
        return reader.recv()
    except (EOFError, OSError):
        return None


def _killed(launcher: ParallelLauncher, sweep_dir: Path, idx: int, overrides: Sequence[str],
            exitcode: int | None) -> JobReturn:
    """A job whose process ended without a result: failed, with the reason in its job dir's error.txt (found by its
    overrides) and in the report."""
    how = (f"was killed by {signal.Signals(-exitcode).name} (as the kernel's out-of-memory killer kills)"
           if exitcode is not None and exitcode < 0 else f"ended with status {exitcode} and no result")
    message = (f"JobKilled: the process running this job {how}; the other jobs went on. Rerun the sweep to run "
               f"this one again")
    log.error("job %d: %s", idx, message)
    job_dir = _job_dir(sweep_dir, overrides)
    if job_dir is not None and not (job_dir / "error.txt").exists():
        from runner.core.files import write_text

        try:
            write_text(job_dir / "error.txt", message + "\n")
        except OSError:
            pass
    # As runner's jobs return a failure (the sweep goes on, its report lists it): a status, or NaN to a search.
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = (float("nan") if launcher.config.get("sweep_objective")
                        else {"status": "failed", "error": message})
    return ret


def _job_dir(sweep_dir: Path, overrides: Sequence[str]) -> Path | None:
    """The job folder whose saved overrides are this job's (Hydra saves a job's task overrides)."""
    import yaml

    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    for saved in sweep_dir.glob("**/.hydra/overrides.yaml"):
        try:
            if (yaml.safe_load(saved.read_text()) or []) == task:
                return saved.parent.parent
        except (OSError, yaml.YAMLError):
            continue
    return None
