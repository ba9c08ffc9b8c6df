"""``python -m runner.records.diff A B``: what differs between two run dirs, from their files alone: the config (keys
changed, added, removed), the provenance (code version, packages, devices, machine) and the final metrics."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.config.hydra import flat
from runner.records.rundirs import is_run_dir, read

# What provenance.json says of how a run was made (not when: its time and command line are always different)
PROVENANCE = ("git.sha", "git.dirty", "packages", "python", "platform", "host", "devices", "tensorflow_build")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "(none)" if value is None else str(value)


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, A's value, B's value) of each key whose values differ; a key one side lacks has None there."""
    missing = object()
    found = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            found.append((key, None if va is missing else va, None if vb is missing else vb))
    return found


def _section(title: str, rows: list[tuple[str, Any, Any]], a: dict, b: dict) -> list[str]:
    if not rows:
        return [f"{title}: the same"]
    lines = [f"{title}: {len(rows)} difference(s)"]
    for key, va, vb in rows:
        if key not in a:
            lines.append(f"  + {key} = {_shown(vb)}   (only in B)")
        elif key not in b:
            lines.append(f"  - {key} = {_shown(va)}   (only in A)")
        else:
            lines.append(f"    {key}: {_shown(va)} -> {_shown(vb)}")
    return lines


def diff(a_dir: Path, b_dir: Path) -> list[str]:
    """The lines ``python -m runner.records.diff`` prints."""
    a, b = read(a_dir), read(b_dir)
    config_a, config_b = flat(a.config), flat(b.config)
    config_a.pop("run_dir", None)
    config_b.pop("run_dir", None)
    made_a = {k: v for k, v in flat(a.provenance).items() if k.startswith(PROVENANCE)}
    made_b = {k: v for k, v in flat(b.provenance).items() if k.startswith(PROVENANCE)}
    results_a = {"status": a.status, "steps": a.steps, **a.metrics()}
    results_b = {"status": b.status, "steps": b.steps, **b.metrics()}
    return [f"A: {a_dir}", f"B: {b_dir}",
            *_section("config", differences(config_a, config_b), config_a, config_b),
            *_section("provenance", differences(made_a, made_b), made_a, made_b),
            *_section("results", differences(results_a, results_b), results_a, results_b)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.records.diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, metavar="A", help="a run dir")
    parser.add_argument("b", type=Path, metavar="B", help="another run dir")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for path in (args.a, args.b):
        if not is_run_dir(path):
            print(f"error: {path} is not a run dir (no .hydra/config.yaml, provenance.json or summary.json); give "
                  f"two run dirs, e.g. outputs/DATE/TIME or multirun/sweep-HASH/N", file=sys.stderr)
            sys.exit(2)
    print("\n".join(diff(args.a, args.b)))


if __name__ == "__main__":
    main()
