"""``hydra/sweeper=optuna``: a search on Optuna whose study lives in the sweep dir, whose trials run through any
launcher, report each eval to the study and stop when its pruner says so, and which the same command continues.

- The search space is ``hydra.sweeper.params`` (and sweeps typed on the command line) in Hydra's override syntax:
  ``interval(a, b)``, ``tag(log, interval(a, b))``, ``int(interval(a, b))``, ``choice(a, b, ...)``,
  ``range(start, stop[, step])`` (``stop`` left out, as everywhere in Hydra); a plain value is the same for every
  trial.
- Trial N is job N (its dir ``SWEEP_DIR/N``): a study continued by the same command reruns the trials that were
  running (each job resumes from its checkpoint), then asks for new ones until the study holds ``n_trials``.
- A trial's job reports its objective at every eval (each ``checkpoint_every`` steps) as an intermediate value;
  when the pruner prunes it, it stops with its checkpoint and the study records it as pruned.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from runner.config.guard import SEARCH_SYNTAX as SYNTAX
from runner.core.errors import ConfigError
from runner.core.files import write_json
from runner.core.results import objective_paths
from runner.records.rundirs import STUDY_FILE

log = logging.getLogger("runner")

TARGET = "hydra_plugins.runner_sweepers.optuna.OptunaSweeper"  # conf/hydra/sweeper/optuna.yaml
JOURNAL = "optuna.journal"  # the study's file in the sweep dir (Optuna's journal storage), unless storage= is given
SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsgaii")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
DIRECTIONS = ("minimize", "maximize")


class Pruned(Exception):  # noqa: N818  a trial's stop, not an error
    """Raised in a trial's job at an eval after which its study's pruner prunes it (its checkpoint is written)."""


@dataclasses.dataclass(frozen=True)
class Space:
    """The search space: Optuna distributions by override key, and the overrides every trial shares."""

    distributions: dict[str, Any]
    fixed: tuple[str, ...]

    def overrides(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """A trial's job overrides: the shared ones, then its drawn values (in the order of the space)."""
        return (*self.fixed, *(f"{key}={_value(params[key])}" for key in self.distributions))

    def grid(self) -> dict[str, list]:
        """Every value of each parameter, for the grid sampler; a continuous interval is refused."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        values = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                values[key] = list(dist.choices)
            elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
                count = int(round((dist.high - dist.low) / dist.step)) + 1
                values[key] = [type(dist.low)(dist.low + i * dist.step) for i in range(count)]
            else:
                raise ConfigError(f"hydra.sweeper.sampler.name=grid: {key} is a continuous interval; give it as "
                                  f"choice(...) or range(...), or use another sampler (tpe, random, cmaes, nsgaii)")
        return values


def _value(value: Any) -> str:
    """A drawn value as an override's value (a string as Hydra reads it back: quoted where it must be)."""
    if isinstance(value, str):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            OverridesParser.create().parse_override(f"k={value}")
            return value
        except Exception:  # noqa: BLE001  a value Hydra would misread: quoted
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else repr(value)


def parse_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> Space:
    """The space of ``hydra.sweeper.params`` and of the command line's sweeps; the command line's other overrides
    are shared by every trial. A spec that does not parse is one ConfigError naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    distributions: dict[str, Any] = {}
    fixed: list[str] = []
    specs = [(f"{key}={value}", f"hydra.sweeper.params: {key}: {value}") for key, value in (params or {}).items()]
    specs += [(arg, f"the command line: {arg}") for arg in arguments]
    for text, where in specs:
        try:
            override = parser.parse_override(text)
        except Exception as err:  # noqa: BLE001  Hydra's parser says where
            raise ConfigError(f"{where} does not parse ({str(err).splitlines()[0][:160]}); write each parameter as "
                              f"one of {SYNTAX}") from None
        key = override.get_key_element()
        if override.is_sweep_override():
            distributions[key] = _distribution(override, where)
            fixed = [f for f in fixed if not f.startswith(f"{key}=")]
        else:
            distributions.pop(key, None)
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return Space(distributions, tuple(fixed))


def _distribution(override: Any, where: str) -> Any:
    """An Optuna distribution from a sweep override (hydra-optuna-sweeper's mapping, but range() leaves out its stop
    as Hydra's range does)."""
    from hydra.core.override_parser.types import Glob, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, Glob):
        raise ConfigError(f"{where}: a search draws from intervals, choices and ranges, not globs; write it as one "
                          f"of {SYNTAX}")
    try:
        if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if override.is_range_sweep():
            values = list(override.sweep_iterator())
            if not values:
                raise ValueError("the range is empty")
            if all(isinstance(v, int) for v in values):
                return IntDistribution(values[0], values[-1], step=int(value.step))
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step)) if len(
                values) > 1 else CategoricalDistribution(values)
        if override.is_interval_sweep():
            log_scale = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log_scale)
            return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}; write each parameter as one of {SYNTAX}") from None
    raise ConfigError(f"{where}: not a search; write it as one of {SYNTAX}")


# ------------------------------------------------------------------------------------------------ the study
@dataclasses.dataclass(frozen=True)
class Search:
    """The sweeper's settings (conf/hydra/sweeper/optuna.yaml), checked."""

    sampler: str
    seed: int | None
    sampler_settings: dict
    directions: tuple[str, ...]
    objectives: tuple[str, ...]
    study_name: str
    storage: str | None  # an RDB URL; None: the journal file in the sweep dir
    n_trials: int
    n_jobs: int
    pruner: str
    pruner_settings: dict
    params: dict

    @classmethod
    def of(cls, sweeper: Mapping[str, Any], objective: Any, sweep_dir: Path) -> Search:
        """From ``hydra.sweeper`` and ``sweep_objective``; a ConfigError for what cannot run."""
        sampler = dict(sweeper.get("sampler") or {})
        name = str(sampler.pop("name", "tpe"))
        if name not in SAMPLERS:
            raise ConfigError(f"hydra.sweeper.sampler.name={name} is not a sampler; choose one of: "
                              f"{', '.join(SAMPLERS)} (hydra/sweeper/sampler={'|'.join(SAMPLERS)})")
        seed = sampler.pop("seed", None)
        pruner = str(sweeper.get("pruner") or "none")
        if pruner not in PRUNERS:
            raise ConfigError(f"hydra.sweeper.pruner={pruner} is not a pruner; choose one of: {', '.join(PRUNERS)}")
        objectives = objective_paths(objective)
        direction = sweeper.get("direction")
        directions = tuple(str(d) for d in (direction if isinstance(direction, Sequence) and not isinstance(
            direction, str) else [direction]))
        for d in directions:
            if d not in DIRECTIONS:
                raise ConfigError(f"hydra.sweeper.direction={d} is not a direction; give maximize or minimize (a "
                                  f"list of them for several objectives)")
        if len(directions) != len(objectives):
            raise ConfigError(f"hydra.sweeper.direction={list(directions)} gives {len(directions)} direction(s) for "
                              f"{len(objectives)} objective(s) (sweep_objective={list(objectives)}); give one each, "
                              f"e.g. hydra.sweeper.direction=[{','.join(['maximize'] * len(objectives))}]")
        if pruner != "none" and len(objectives) > 1:
            raise ConfigError(f"hydra.sweeper.pruner={pruner}: Optuna prunes by one objective and this search has "
                              f"{len(objectives)} ({', '.join(objectives)}); use hydra.sweeper.pruner=none")
        n_trials, n_jobs = int(sweeper.get("n_trials") or 0), int(sweeper.get("n_jobs") or 0)
        if n_trials < 1 or n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: give at least 1 of each (n_trials: "
                              f"the study's trials in total; n_jobs: how many run at once)")
        return cls(name, None if seed is None else int(seed), sampler, directions, objectives,
                   str(sweeper.get("study_name") or sweep_dir.name), sweeper.get("storage"), n_trials, n_jobs,
                   pruner, dict(sweeper.get("pruner_settings") or {}), dict(sweeper.get("params") or {}))

    def storage_of(self, sweep_dir: Path) -> Any:
        """The study's storage: the RDB at ``storage``, else the journal file in the sweep dir."""
        import optuna

        if self.storage:
            try:
                return optuna.storages.RDBStorage(str(self.storage))
            except Exception as err:  # noqa: BLE001  SQLAlchemy's and the driver's errors, said in one line
                raise ConfigError(f"hydra.sweeper.storage={self.storage} cannot be opened "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); give an RDB URL such "
                                  f"as sqlite:////abs/path/study.db, or null for a file in the sweep dir") from None
        from optuna.storages.journal import JournalFileBackend

        sweep_dir.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))

    def make_sampler(self, space: Space) -> Any:
        import optuna

        settings, seed = self.sampler_settings, self.seed
        if self.sampler == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=int(settings.get("n_startup_trials", 1)))
        if self.sampler == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(settings.get("population_size", 50)))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(settings.get("n_startup_trials", 10)),
                                          multivariate=bool(settings.get("multivariate", False)))


def make_pruner(name: str, settings: Mapping[str, Any]) -> Any:
    """Optuna's pruner of that name, with ``pruner_settings`` (steps are training steps)."""
    import optuna

    warmup = {"n_startup_trials": int(settings.get("n_startup_trials", 5)),
              "n_warmup_steps": int(settings.get("n_warmup_steps", 0))}
    resource = settings.get("min_resource", "auto")
    resource = resource if resource == "auto" else int(resource)
    factor = int(settings.get("reduction_factor", 3))
    if name == "median":
        return optuna.pruners.MedianPruner(**warmup)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(float(settings.get("percentile", 25.0)), **warmup)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=resource, reduction_factor=factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1 if resource == "auto" else resource,
                                              reduction_factor=factor)
    return optuna.pruners.NopPruner()


def describe_storage(search: Search, sweep_dir: Path) -> str:
    return str(search.storage) if search.storage else str(sweep_dir / JOURNAL)


def load(study_file: Path) -> Any:
    """A search's study, from the sweep dir's search.json (for the report)."""
    import optuna

    saved = json.loads(study_file.read_text())
    storage = saved["storage"]
    if storage.endswith(JOURNAL) and "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(storage))
    return optuna.load_study(study_name=saved["study_name"], storage=storage), saved


def repeat_keys(config: Any) -> set[str]:
    """report.replicate_over: keys whose values are repeats of one setting (the seed), never searched."""
    from omegaconf import OmegaConf

    return {str(k) for k in OmegaConf.select(config, "report.replicate_over", default=None) or []}


def check_search(config: Any, arguments: Sequence[str]) -> None:
    """A search's settings, space, sampler and storage, checked before any sweep dir or job: each problem one
    ConfigError (the sweep's config; ``arguments``: the command line's overrides)."""
    from omegaconf import OmegaConf

    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    if not isinstance(sweeper, dict) or sweeper.get("_target_") != TARGET:
        return
    if not config.get("sweep_objective"):
        raise ConfigError("hydra/sweeper=optuna maximizes or minimizes what each trial returns: give sweep_objective"
                          "=final_precision.test (or a list, e.g. sweep_objective=[precision_test,examples_per_sec] "
                          "with hydra.sweeper.direction=[maximize,maximize])")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    search = Search.of(sweeper, config.sweep_objective, sweep_dir)
    space = parse_space(search.params, arguments)
    repeats = repeat_keys(config)
    searched = [k for k in space.distributions if k.lstrip("+~") not in repeats]
    for key in space.distributions:
        if key.lstrip("+~") in repeats and searched:
            raise ConfigError(f"{key} is searched beside {', '.join(searched)}: a search runs each trial once, so "
                              f"repeats over {key} cannot be grouped; search without it, then repeat the best "
                              f"trial's command (the report gives it) over {key}: python -m runner -m ... "
                              f"'{key}=range(5)'")
    if space.distributions and not searched:
        space.grid()  # repeats alone: a grid of them
    if not space.distributions:
        raise ConfigError("hydra/sweeper=optuna has nothing to search: give hydra.sweeper.params (e.g. "
                          "optimizer.lr: tag(log, interval(0.001, 0.5))) or a sweep such as "
                          "'optimizer.lr=interval(0.01,0.1)'")
    if search.sampler == "grid":
        space.grid()
    if search.storage:
        search.storage_of(sweep_dir)


# ------------------------------------------------------------------------------------------------ the sweep
class Runner:
    """Runs a search through a Hydra launcher: ``launch(overrides, first_job_num)`` returns Hydra's JobReturns."""

    def __init__(self, search: Search, sweep_dir: Path, launch: Callable, interrupted: Callable[[], bool],
                 repeats: Set[str] = frozenset()):
        self.search, self.sweep_dir, self.launch, self.interrupted = search, sweep_dir, launch, interrupted
        self.repeats = repeats

    def run(self, arguments: Sequence[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search = self.search
        space = parse_space(search.params, arguments)
        if space.distributions and all(k.lstrip("+~") in self.repeats for k in space.distributions):
            self._repeat(space)
            return
        study = optuna.create_study(study_name=search.study_name, storage=search.storage_of(self.sweep_dir),
                                    sampler=search.make_sampler(space), load_if_exists=True,
                                    directions=list(search.directions))
        if [d.name.lower() for d in study.directions] != list(search.directions):
            raise ConfigError(f"the study {search.study_name} optimizes {[d.name.lower() for d in study.directions]}, "
                              f"not hydra.sweeper.direction={list(search.directions)}; use another study_name")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.sweep_dir / STUDY_FILE, {
            "storage": describe_storage(search, self.sweep_dir), "study_name": search.study_name,
            "objectives": list(search.objectives), "directions": list(search.directions),
            "sampler": search.sampler, "pruner": search.pruner})
        total = search.n_trials
        if search.sampler == "grid":
            size = math.prod(len(v) for v in space.grid().values())
            if size < total:
                log.info("The grid has %d points: %d trials, not hydra.sweeper.n_trials=%d", size, size, total)
                total = size
        trials = study.get_trials(deepcopy=False)
        resume = sorted((t for t in trials if not t.state.is_finished()), key=lambda t: t.number)
        finished = len(trials) - len(resume)
        if not resume and len(trials) >= total:
            log.info("The study %s has its %d trials (%s): nothing to run. Raise hydra.sweeper.n_trials to search "
                     "on.", search.study_name, len(trials), _states(trials))
            return
        log.info("Searching: study %s (%s), %s sampler%s, pruner %s, %d trials in all: %d finished, %d to resume, "
                 "%d to start; %d at a time", search.study_name, describe_storage(search, self.sweep_dir),
                 search.sampler, f" (seed {search.seed})" if search.seed is not None else "", search.pruner, total,
                 finished, len(resume), max(0, total - len(trials)), search.n_jobs)
        while not self.interrupted():
            batch = [(t.number, t.params) for t in resume[:search.n_jobs]]
            resume = resume[search.n_jobs:]
            while len(batch) < search.n_jobs and len(study.get_trials(deepcopy=False)) < total:
                trial = study.ask(fixed_distributions=space.distributions)
                batch.append((trial.number, trial.params))
            if not batch:
                break
            for (number, _), outcome in zip(batch, self._launch(space, batch)):
                self._tell(study, number, outcome)
        trials = study.get_trials(deepcopy=False)
        log.info("Search: %d of %d trials (%s)%s", len(trials), total, _states(trials), _best(study))

    def _repeat(self, space: Space) -> None:
        """Only repeats left to sweep (the best trial's command with 'seed=range(5)'): their grid, as Hydra's basic
        sweeper runs it, ``n_jobs`` at a time; no study."""
        grid = space.grid()
        jobs = [space.overrides(dict(zip(grid, values))) for values in itertools.product(*grid.values())]
        log.info("Repeating: %d jobs over %s (nothing else to search: no study)", len(jobs), ", ".join(grid))
        for first in range(0, len(jobs), self.search.n_jobs):
            if self.interrupted():
                break
            self.launch(jobs[first:first + self.search.n_jobs], first)

    def _launch(self, space: Space, batch: list[tuple[int, dict]]) -> list[Any]:
        """Each trial as job ``number`` (consecutive numbers in one launch)."""
        outcomes: list[Any] = []
        for run in _consecutive(batch):
            returns = self.launch([space.overrides(params) for _, params in run], run[0][0])
            outcomes += list(returns)
        return outcomes

    def _tell(self, study: Any, number: int, outcome: Any) -> None:
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        if outcome.status != JobStatus.COMPLETED:
            _told(study, number, state=TrialState.FAIL)
            return
        value = outcome.return_value
        if isinstance(value, dict):
            status = value.get("status")
            if status == "pruned":
                _told(study, number, state=TrialState.PRUNED)
            elif status in ("failed", None):
                _told(study, number, state=TrialState.FAIL)
            return  # interrupted, or running in another process: the trial stays running, to be resumed
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if len(values) != len(self.search.directions) or not all(math.isfinite(v) for v in values):
            log.error("Trial %d returned %s, not %d finite number(s): recorded as failed", number, value,
                      len(self.search.directions))
            _told(study, number, state=TrialState.FAIL)
            return
        _told(study, number, values=values)


def _told(study: Any, number: int, **outcome: Any) -> None:
    """``study.tell``; the grid sampler's wish to stop the study once every point is drawn (which Optuna refuses
    outside its own optimize loop) is already this search's end."""
    try:
        study.tell(number, **outcome)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def _consecutive(batch: list[tuple[int, dict]]) -> Iterator[list[tuple[int, dict]]]:
    run: list[tuple[int, dict]] = []
    for item in sorted(batch, key=lambda b: b[0]):
        if run and item[0] != run[-1][0] + 1:
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _states(trials: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _best(study: Any) -> str:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return ""
    if len(study.directions) > 1:
        return f"; the Pareto front holds trial(s) {', '.join(str(t.number) for t in study.best_trials)}"
    best = study.best_trial
    return f"; best: trial {best.number}, {best.value:.4g} ({', '.join(f'{k}={v}' for k, v in best.params.items())})"


# ------------------------------------------------------------------------------------------------ a trial's job
def trial_reporter(sweeper: Mapping[str, Any], sweep_dir: Path, job_num: int, objective: Any
                   ) -> Callable[[int, dict], None] | None:
    """In a search's job: a function told each eval (step, partial summary) that reports the objective to the
    study as the trial's intermediate value and raises Pruned when the study's pruner prunes the trial. None
    outside a search, or when the search prunes nothing."""
    if sweeper.get("_target_") != TARGET or str(sweeper.get("pruner") or "none") == "none":
        return None
    if not (sweep_dir / STUDY_FILE).is_file():
        return None  # repeats of one setting (a search left with nothing else to sweep): no study to report to
    search = Search.of(sweeper, objective, sweep_dir)
    path = search.objectives[0]
    state: dict[str, Any] = {}

    def report(step: int, partial: dict) -> None:
        from runner.sweeps.sweep import value_at

        try:
            value = value_at(partial, path)
        except ConfigError:
            return  # not known at an eval (the rate before the first log line): nothing to report
        if not math.isfinite(value):
            return
        if "trial" not in state:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = search.storage_of(sweep_dir)
            study = optuna.load_study(study_name=search.study_name, storage=storage,
                                      pruner=make_pruner(search.pruner, search.pruner_settings))
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(search.study_name), job_num)
            state["trial"] = optuna.trial.Trial(study, trial_id)
        trial = state["trial"]
        trial.report(value, step)
        if trial.should_prune():
            raise Pruned(f"pruned by the study's {search.pruner} pruner at step {step} ({path}={value:.4g})")

    return report
