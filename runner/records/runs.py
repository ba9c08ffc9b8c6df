"""``python -m runner.records.runs [DIR ...]``: every run under outputs/ and multirun/ (or the folders given) as one
table: status, steps, key settings and final metrics, sorted by a column (``--sort precision_test``) and filtered by any
column or config key (``--where pipeline=queue``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.config.hydra import flat
from runner.core.results import as_text, higher_is_better
from runner.records.rundirs import find, read

SETTINGS = ("dataset", "pipeline", "model", "hardware", "batch_size", "seed")


def row(path: Path, base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's row (its columns) and its flattened config (for --where on any key)."""
    run = read(path)
    config = flat(run.config)
    settings = {k: config.get(f"{k}.name", config.get(k)) for k in SETTINGS}
    try:
        name = str(path.relative_to(base))
    except ValueError:
        name = str(path)
    return {"run": name, "mode": config.get("mode"), "status": run.status, "steps": run.steps, **settings,
            **run.metrics()}, config


def _matches(columns: dict, config: dict, where: list[tuple[str, str]]) -> bool:
    for key, wanted in where:
        value = columns[key] if key in columns else config.get(f"{key}.name", config.get(key))
        if str(value) != wanted:
            return False
    return True


def table(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    keys = [k for k in keys if any(r.get(k) is not None for r in rows)]
    cells = [[as_text(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return [line(keys), line(["-" * w for w in widths]), *(line(c) for c in cells)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.records.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, metavar="DIR",
                        help="folders to look in (default: outputs and multirun here)")
    parser.add_argument("--sort", metavar="COLUMN", help="sort by a column, best first for a metric "
                                                         "(precision_test, examples_per_sec, steps, ...)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs whose column or config key has this value (pipeline=queue, "
                             "optimizer.lr=0.1); repeat for several")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    roots = args.dirs or [p for p in (Path("outputs"), Path("multirun")) if p.is_dir()]
    missing = [str(p) for p in args.dirs if not p.is_dir()]
    if missing:
        _fail(f"{', '.join(missing)}: not a folder; give folders that hold run dirs (outputs, multirun)")
    where = []
    for item in args.where:
        key, eq, value = item.partition("=")
        if not eq or not key:
            _fail(f"--where {item}: give KEY=VALUE, e.g. --where pipeline=queue")
        where.append((key, value))
    found = [row(p, Path.cwd()) for p in dict.fromkeys(find(roots))]
    rows = [columns for columns, config in found if _matches(columns, config, where)]
    if args.sort:
        known = {k for r in rows for k in r}
        if rows and args.sort not in known:
            _fail(f"--sort {args.sort}: not a column; the columns are: {', '.join(sorted(known))}")
        present = [r for r in rows if r.get(args.sort) is not None]
        absent = [r for r in rows if r.get(args.sort) is None]
        numeric = all(isinstance(r[args.sort], (int, float)) for r in present)
        best_first = numeric and higher_is_better(args.sort)
        rows = sorted(present, key=lambda r: r[args.sort] if numeric else str(r[args.sort]),
                      reverse=best_first) + absent
    if not rows:
        print(f"no runs under {', '.join(map(str, roots)) or 'outputs/ or multirun/ (none here)'}"
              + (f" with {' and '.join(args.where)}" if args.where else ""))
        return
    print("\n".join(table(rows)))
    print(f"{len(rows)} run(s)")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
