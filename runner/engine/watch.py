"""What each eval decides beyond its numbers: the best checkpoint kept apart (``checkpoint.keep_best``) and a stop when
a metric stops improving (``early_stopping``). Both start from the run dir (checkpoints/best/best.json and the evals
in metrics.jsonl), so a resumed run goes on where it was."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runner.config.schema import EarlyStoppingConfig
from runner.core.errors import RunnerError
from runner.core.files import write_json
from runner.engine.checkpoints import CHECKPOINT_NAME, checkpoint_dir

log = logging.getLogger("runner")

BEST_DIR = "best"  # checkpoints/best/: the best checkpoint by checkpoint.keep_best, apart from the last N
BEST_FILE = "best.json"  # in it: the metric, its value, the step and the checkpoint's name


def best_dir(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / BEST_DIR


def best_checkpoint(run_dir: str | Path) -> tuple[str, dict]:
    """The best checkpoint the run kept, and its record; a RunnerError saying how to keep one if there is none."""
    record_path = best_dir(run_dir) / BEST_FILE
    try:
        record = json.loads(record_path.read_text())
        path = best_dir(run_dir) / record["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunnerError(f"{run_dir} kept no best checkpoint ({record_path} is missing or unreadable): train it with "
                          f"checkpoint.keep_best=METRIC (e.g. precision_validation), or evaluate its latest with "
                          f"checkpoint=latest") from None
    if not Path(f"{path}.index").exists():
        raise RunnerError(f"{path}.index is missing: the best checkpoint of {run_dir} is incomplete; evaluate its "
                          f"latest with checkpoint=latest")
    return str(path), record


def _split(metric: str | None) -> str:
    """precision_validation -> validation (the schema's checks made sure it names an eval split)."""
    return (metric or "").removeprefix("precision_")


def _evals(run_dir: Path, split: str) -> list[tuple[int, float]]:
    """(step, precision) of each eval of ``split`` in metrics.jsonl, in order."""
    out = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("split") == split and "precision" in entry:
            out.append((int(entry["step"]), float(entry["precision"])))
    return out


@dataclass
class Watch:
    """Told each eval's precisions (:meth:`after_eval`); ``stopped`` says why the run should stop, once it should."""

    run_dir: Path
    keep_best: str | None = None
    early: EarlyStoppingConfig | None = None
    best: dict | None = None  # checkpoints/best/best.json
    history: list[tuple[int, float]] = field(default_factory=list)  # early_stopping.metric's evals
    stopped: dict | None = None  # the early stop: step, metric, best, best_step, patience

    @classmethod
    def of(cls, run_dir: Path, keep_best: str | None, early: EarlyStoppingConfig | None) -> Watch:
        early = early if early is not None and early.metric else None
        best = None
        if keep_best:
            try:
                best = best_checkpoint(run_dir)[1]
            except RunnerError:
                best = None
            if best is not None and best.get("metric") != keep_best:
                best = None  # kept by another metric: the first eval from here keeps a new one
        watch = cls(run_dir, keep_best, early, best, _evals(run_dir, _split(early.metric)) if early else [])
        watch._check_stop()
        if watch.stopped:
            log.info("This run stopped early at step %d (%s); nothing to train", watch.stopped["step"],
                     watch._why())
        return watch

    @staticmethod
    def _better(value: float, than: float, delta: float, mode: str) -> bool:
        return value - than > delta if mode == "max" else than - value > delta

    def after_eval(self, step: int, precision: dict[str, float]) -> None:
        if self.keep_best and _split(self.keep_best) in precision:
            value = precision[_split(self.keep_best)]
            if self.best is None or self._better(value, self.best["value"], 0.0, "max"):
                self._keep(step, value)
        if self.early is not None and _split(self.early.metric) in precision:
            self.history.append((step, precision[_split(self.early.metric)]))
            self._check_stop()
            if self.stopped:
                log.info("Stopping early at step %d: %s", step, self._why())

    def _keep(self, step: int, value: float) -> None:
        """The checkpoint of ``step`` (saved just before its eval) copied to checkpoints/best/, replacing the one
        there."""
        name = f"{CHECKPOINT_NAME}-{step}"
        files = sorted(checkpoint_dir(self.run_dir).glob(f"{name}.*"))
        if not files:
            return
        target = best_dir(self.run_dir)
        staging = target.with_name(f".{BEST_DIR}-new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for file in files:
            shutil.copy2(file, staging / file.name)
        self.best = {"metric": self.keep_best, "value": value, "step": step, "checkpoint": name}
        write_json(staging / BEST_FILE, self.best)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # whole or not at all: the old best stays until the new one is complete
        log.info("Best %s so far: %.4f at step %d (kept in %s)", self.keep_best, value, step, target)

    def _check_stop(self) -> None:
        """Stops after ``patience`` evals in a row (at least one) without an improvement of more than min_delta on
        the best so far, as Keras's EarlyStopping counts them."""
        early = self.early
        if early is None or not self.history:
            return
        best_step, best = self.history[0]
        wait = 0
        for step, value in self.history[1:]:
            if self._better(value, best, early.min_delta, early.mode):
                best_step, best, wait = step, value, 0
            else:
                wait += 1
        if wait >= max(early.patience, 1):
            self.stopped = {"step": self.history[-1][0], "metric": early.metric, "best": best,
                            "best_step": best_step, "patience": early.patience}

    def _why(self) -> str:
        """Why the run stopped (called once it has: ``early`` and ``stopped`` are set)."""
        assert self.early is not None and self.stopped is not None
        s = self.stopped
        return (f"{s['metric']} has not improved by more than {self.early.min_delta:g} in {s['patience']} eval(s) "
                f"(best {s['best']:.4f} at step {s['best_step']})")
