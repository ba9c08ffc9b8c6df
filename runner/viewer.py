"""``make tensorboard``: TensorBoard on a run dir or a sweep dir, by default the newest under outputs/ and multirun/.

    python -m runner.viewer [DIR] [--port 6006] [--host localhost]

A run dir holds training's events, its evaluations' in eval/, profiles in plugins/profile/; a sweep dir holds its
jobs' dirs and their HParams summaries (runner.hparams).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOTS = ("outputs/*/*", "multirun/*")  # run dirs (DATE/TIME) and sweep dirs, relative to where runner runs


def newest(base: Path = Path(".")) -> Path | None:
    """The run or sweep dir whose event files were written last (a running job's first)."""
    def last_write(directory: Path) -> float:
        times = [p.stat().st_mtime for p in directory.rglob("events.out.tfevents.*")]
        return max(times) if times else -1.0

    found = [(last_write(d), d) for pattern in ROOTS for d in base.glob(pattern) if d.is_dir()]
    found = [(t, d) for t, d in found if t >= 0]
    return max(found)[1] if found else None


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.viewer", description=__doc__.split("\n")[0])
    parser.add_argument("dir", nargs="?", help="a run or sweep dir (default: the newest under outputs/, multirun/)")
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--host", default="localhost", help="0.0.0.0 serves other machines too")
    args = parser.parse_args(argv)
    logdir = Path(args.dir) if args.dir else newest()
    if logdir is None:
        _fail("no run with TensorBoard events under outputs/ or multirun/: train first (make train), or give a "
              "dir: make tensorboard RUN=DIR")
    if not logdir.is_dir():
        _fail(f"{logdir} is not a directory; give a run or sweep dir: make tensorboard RUN=DIR")
    if importlib.util.find_spec("tensorboard") is None:
        _fail("TensorBoard is not installed: pip install -e '.[tensorboard]' (make install includes it)")
    print(f"TensorBoard on {logdir} at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(args.port),
               "--host", args.host]
    os.execv(sys.executable, command)  # TensorBoard itself, taking this process's signals


if __name__ == "__main__":
    main()
