"""What a run dir holds, read back: its saved config, summary, provenance, the step its latest checkpoint reached, and
its status (completed, pruned, failed, interrupted, incomplete)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.core.results import BENCH, SUMMARY, columns

CONFIG = Path(".hydra") / "config.yaml"
STUDY_FILE = "search.json"  # a search's sweep dir: its study's storage, name, objectives and directions
PRUNED = "pruned.txt"  # a search's job stopped by its study's pruner: why, and at which step
# What a sweep's job notes in its dir when it does not complete (runner.sweeps.job), in the order they count
NOTES = (("error.txt", "failed"), ("interrupted.txt", "interrupted"), (PRUNED, "pruned"))
_CKPT = re.compile(r"model\.ckpt-(\d+)\.index$")


@dataclass
class RunDir:
    path: Path
    config: dict = field(default_factory=dict)
    summary: dict | None = None
    bench: dict | None = None
    provenance: dict = field(default_factory=dict)
    tune: dict | None = None  # mode=tune's tune.json: each pipeline's search (a stopped one has no table)

    @property
    def status(self) -> str:
        note = noted(self.path)
        if note is not None:
            return note[0]
        if self.summary is not None and "interrupted" not in self.summary:
            return "completed"
        if self.bench is not None:
            return "interrupted" if "interrupted" in self.bench else "completed"
        if self.tune is not None:
            finished = all(isinstance(t, dict) and "table" in t for t in self.tune.values())
            return "completed" if finished else "interrupted"
        return "incomplete"

    @property
    def steps(self) -> int | None:
        """The global step reached: summary.json's, else the latest checkpoint's."""
        if self.summary is not None and isinstance(self.summary.get("steps"), int):
            return self.summary["steps"]
        found = [int(m.group(1)) for p in (self.path / "checkpoints").glob("*.index") if (m := _CKPT.search(p.name))]
        return max(found) if found else None

    def metrics(self) -> dict[str, Any]:
        """Its final numbers as the sweep report's columns (precision_test, examples_per_sec, ...)."""
        if self.summary is not None:
            return columns(self.summary, SUMMARY)
        return columns(self.bench, BENCH) if self.bench is not None else {}


def noted(path: Path) -> tuple[str, Path] | None:
    """The status a job's note gives it (failed, interrupted, pruned) and the note's file, if it left one."""
    return next(((status, path / name) for name, status in NOTES if (path / name).is_file()), None)


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read(path: Path) -> RunDir:
    """A run dir's files; what is missing or unreadable is left empty (a run stopped early has no summary). Its
    config: the one Hydra saved (.hydra/config.yaml, .hydra/MODE/ for a bench), else the one provenance.json or
    summary.json recorded (a run made from Python, not the command line)."""
    summary, provenance = read_json(path / "summary.json"), read_json(path / "provenance.json") or {}
    saved = next((p for p in [path / CONFIG, *sorted(path.glob(".hydra/*/config.yaml"))] if p.is_file()), None)
    config: Any = None
    if saved is not None:
        try:
            config = yaml.safe_load(saved.read_text())
        except (OSError, yaml.YAMLError):
            config = None
    if not isinstance(config, dict):
        config = provenance.get("config") or (summary or {}).get("config") or {}
    return RunDir(path, config if isinstance(config, dict) else {}, summary, read_json(path / "bench.json"), provenance,
                  read_json(path / "tune.json"))


MARKERS = (str(CONFIG), ".hydra/*/config.yaml", "provenance.json", "summary.json", "bench.json", "tune.json")


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(any(path.glob(marker)) for marker in MARKERS)


def find(roots: list[Path]) -> Iterator[Path]:
    """Every run dir under ``roots`` (a root may itself be one), once each, in path order; a run dir's own folders
    (its checkpoints, .hydra) are not searched."""
    for root in roots:
        if is_run_dir(root):
            yield root
            continue
        found = {marker_file.parent.parent if marker_file.parent.name == ".hydra" else
                 marker_file.parent.parent.parent if marker_file.parent.parent.name == ".hydra" else
                 marker_file.parent
                 for marker in MARKERS for marker_file in root.glob(f"**/{marker}")}
        yield from sorted(run for run in found if run != root and ".hydra" not in run.relative_to(root).parts)
