"""The command line: Hydra composes the config, it is validated once (before a single run's dir is made, or in a
sweep's job), then the mode runs: ``MODES[cfg.mode](cfg, run_dir, invocation)``. Errors become one line and exit 2.

TensorFlow is imported only once a run starts, so ``--help`` and ``--cfg job`` answer instantly.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.cli.messages import composition_error, help_text, launcher_error
from runner.cli.resolvers import register_resolvers
from runner.config import guard, packages, plugins
from runner.config.checks import check_writable, group_schema
from runner.config.hydra import CONF_DIR, register_schemas, task_overrides
from runner.core.closing import still_closing
from runner.core.errors import ConfigError, RunnerError, as_runner_error, describe_os_error
from runner.core.signals import Interrupted, raise_on_signals
from runner.distributed.roles import writes_run_dir
from runner.records.tracking import tracked
from runner.run import rundir
from runner.run.invocation import Invocation
from runner.sweeps import sweep
from runner.sweeps.job import job
from runner.sweeps.search import trial_reporter

log = logging.getLogger("runner")


register_schemas()
register_resolvers()


def checked(cfg: DictConfig, run_dir: str, overrides: list[str]) -> DictConfig:
    """The config a run runs, validated: for mode=eval the run's own config with this command line's choices
    (runner.run.rundir.eval_config), else ``cfg``. Every run passes these checks first (a tune run also checks that
    it can write its experiment)."""
    from runner.run.validate import validate  # the datasets' modules: not on the way of --cfg and --help

    if cfg.mode == "eval":
        cfg = rundir.eval_config(run_dir, cfg, overrides)
    validate(cfg)
    return cfg


def run(cfg: DictConfig, run_dir: str, overrides: list[str] | None = None) -> dict | float | None:
    """Runs a composed config in run_dir as the command line does, in this process: validated, then its mode. With
    ``sweep_objective`` a training run returns that number of its summary."""
    called = invocation(overrides, cfg.get("sweep_objective"))
    return _run_mode(checked(cfg, run_dir, list(called.overrides)), run_dir, called)


def invocation(overrides: list[str] | None = None, objective: Any = None) -> Invocation:
    """What the command says beyond the config, read from Hydra here and passed down: its overrides (``overrides``
    when a caller gives them), how many jobs of its sweep run at once on this machine, the launcher's
    ``n_jobs`` (joblib's convention: -1 all cores, -2 all but one, ...) when it runs jobs side by side here, and in
    a search's job, its trial's report of each eval (``objective``: the sweep's)."""
    overrides = task_overrides() if overrides is None else overrides
    jobs, after_eval = 1, None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra_cfg = HydraConfig.get()
        n_jobs = hydra_cfg.launcher.get("n_jobs")  # None: one at a time, or each on its own machine
        if n_jobs is not None:
            cores = os.cpu_count() or 1
            jobs = max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)
        after_eval = trial_reporter(OmegaConf.to_container(hydra_cfg.sweeper, resolve=True),
                                    Path(hydra_cfg.sweep.dir), int(hydra_cfg.job.num), objective)
    return Invocation(tuple(overrides), jobs, after_eval)


def _run_mode(cfg: DictConfig, run_dir: str, called: Invocation) -> dict | float | None:
    from runner.modes import MODES

    with tracked(cfg.tracking, cfg.mode, Path(run_dir), *_tracking_where(cfg)):
        result = MODES[cfg.mode](cfg, run_dir, called)
    if cfg.mode == "train" and cfg.sweep_objective and result is not None:
        return sweep.objective(result, cfg.sweep_objective)
    return result


def _tracking_where(cfg: DictConfig) -> tuple[Path, Path | None, bool]:
    """For tracking: the folder the command runs in, the sweep dir of a sweep's job, and whether this process owns
    the run dir (a cluster's other tasks leave it to the chief, or to local_cluster's launcher)."""
    hardware = cfg.hardware
    owner = writes_run_dir(group_schema(cfg, "hardware").processes, hardware.get("ps", 1),
                           hardware.get("resolver", "auto"))
    if not HydraConfig.initialized():
        return Path.cwd(), None, owner
    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    return Path(hydra_cfg.runtime.cwd), sweep_dir, owner


class ValidateBeforeRun(Callback):
    """Hydra callback: a single run's config is checked before Hydra creates its run dir, so a rejected config
    leaves nothing behind; the run then runs the checked config. (Sweep jobs are checked in the job, where a
    failure is recorded in the report.)"""

    checked: DictConfig | None = None  # the config the callback checked, for the run that follows it

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        job = config.copy()
        with open_dict(job):
            del job["hydra"]
        run_dir = os.path.abspath(str(config.hydra.run.dir))
        try:
            check_writable(job.run_dir)
            ValidateBeforeRun.checked = checked(job, run_dir, list(config.hydra.overrides.task))
        except ConfigError as err:
            print(f"error: {err}", flush=True)
            sys.exit(2)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _task(cfg: DictConfig) -> dict | float | None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return job(cfg, Path(hydra_cfg.sweep.dir), Path(hydra_cfg.runtime.output_dir), run)
    try:
        return _run_mode(ValidateBeforeRun.checked, hydra_cfg.runtime.output_dir, invocation())
    except Interrupted as err:
        log.error("stopped: %s", err)
        sys.exit(err.exit_code)
    except Exception as err:
        err = as_runner_error(err)
        if not isinstance(err, RunnerError):
            raise
        if isinstance(err, ConfigError):
            _remove_if_new(Path(hydra_cfg.runtime.output_dir), hydra_cfg.output_subdir)
        log.error("error: %s", err)
        sys.exit(2)


def _remove_if_new(run_dir: Path, subdir: str | None) -> None:
    """A rejected run leaves nothing behind: no run dir if it made one (only Hydra's config and log were written
    there), else not the config it would have resumed with. A cluster task that does not own the run dir wrote
    nothing there (``subdir`` None) and removes nothing."""
    if subdir is None:
        return
    if subdir.startswith(".hydra/resumes/"):
        shutil.rmtree(run_dir / subdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            (run_dir / subdir).parent.rmdir()  # when it was the first
    elif run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "runner.log", ".lock"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def home_expanded(args: list[str]) -> list[str]:
    """``KEY=~/data`` as the shell would give it for a plain variable: Hydra cannot read a ``~`` there, so a value that
    starts with ``~/`` (or is ``~``) is the home folder's path."""
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and (value == "~" or value.startswith("~/")) and "," not in value:
            arg = f"{key}={os.path.expanduser(value)}"
        out.append(arg)
    return out


def first_job_when_shown(args: list[str]) -> list[str]:
    """``-m ... --cfg job|hydra`` shows the config of the sweep's first job (Hydra itself refuses the pair)."""
    if not {"-m", "--multirun"} & set(args) or not {"-c", "--cfg"} & set(args):
        return args
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parse = OverridesParser.create().parse_override
    one = []
    for arg in args:
        if arg in ("-m", "--multirun"):
            continue
        override = parse(arg) if "=" in arg and not arg.startswith("-") else None
        if override is not None and override.is_sweep_override():
            if override.is_interval_sweep() or override.is_glob():
                continue  # a search's interval or a glob: the key keeps its configured value
            arg = f"{arg.split('=', 1)[0]}={next(override.sweep_string_iterator())}"
        one.append(arg)
    print("(-m with --cfg: the config of the sweep's first job)", file=sys.stderr)
    return one


def in_utf8_mode() -> None:
    """A command line with letters outside ASCII, typed in a locale that is not UTF-8 (LANG=C): this process runs
    itself again in Python's UTF-8 mode, so a path such as run_dir=/data/rün reaches TensorFlow (which reads UTF-8)
    as typed, not as undecodable bytes."""
    if sys.flags.utf8_mode or sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        return
    if all(arg.isascii() for arg in sys.argv[1:]):
        return
    os.execv(sys.executable, [sys.executable, "-X", "utf8", "-m", "runner", *map(os.fsencode, sys.argv[1:])])


def program() -> None:
    """``python -m runner`` and the ``runner`` command: :func:`main`, as a process of its own."""
    code: int | str | None = 0
    try:
        main()
    except SystemExit as done:
        code = done.code
        raise
    except BaseException:
        code = None  # Python says it (a traceback) and ends as it ends
        raise
    finally:
        if code is not None:
            _end_without_waiting(code)


def _end_without_waiting(code: int | str) -> None:
    """A session still closing in the background (tf.data's autotuner, runner.core.closing) holds nothing of
    the run: the process ends now, with its output flushed, instead of waiting up to a minute for it."""
    if not still_closing():
        return
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _show_config(argv: list[str]) -> None:
    """``--cfg job|hydra|all``, checked as any command is, with Hydra's own plug-ins alone: the installed launchers
    and sweepers are loaded only for a config that chooses one of them (it fails to compose without them)."""
    plugins.core_only()
    try:
        checked_by = guard.check(argv)
    except Exception:  # noqa: BLE001  composed again with every plug-in, which says what is wrong if anything is
        plugins.all_installed()
        checked_by = guard.check(argv)
    if checked_by is None:  # RUNNER_ALLOW_TARGETS=1: Hydra's app shows it
        plugins.all_installed()
        _task()
    else:
        checked_by.show_cfg()


def main() -> None:
    in_utf8_mode()
    try:
        packages.check()  # an installed package of parts that is broken: one line
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(help_text(), end="")
        return
    raise_on_signals()
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # errors reach here, where they become one line and exit 2
    try:
        sys.argv[1:] = first_job_when_shown(home_expanded(sys.argv[1:]))
        if guard.only_shows_config(sys.argv[1:]):
            _show_config(sys.argv[1:])
            return
        checked_by = guard.check(sys.argv[1:])
        with checked_by.answering_get_mode() if checked_by else contextlib.nullcontext():
            _task()
    except Interrupted as err:
        print(f"stopped: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except ConfigError as err:  # refused before Hydra acted on the config (runner.config.guard)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        message = (composition_error(err, sys.argv[1:]) or launcher_error(err)
                   or (describe_os_error(err) if isinstance(err, OSError) else None))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
