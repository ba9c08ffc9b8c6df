"""``make tensorboard``: TensorBoard on a run dir or a sweep dir, by default the newest under outputs/ and multirun/.

    python -m runner.viewer [DIR] [--port 6006] [--host localhost]

A run dir holds training's events, its evaluations' in eval/, profiles in plugins/profile/; a sweep dir holds its
jobs' dirs and their HParams summaries (runner.sweeps.hparams).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
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
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's start-up lines")
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
    # TensorBoard names the events at its logdir's top ".": a run dir is given as a folder holding a link named
    # after it, so the run is NAME and its evals NAME/eval. (A sweep dir's runs are its jobs, named by their folders.)
    with tempfile.TemporaryDirectory(prefix="runner-tensorboard-") as named:
        if any(logdir.glob("*/.hydra")):
            served = str(logdir)
        else:
            (Path(named) / (logdir.resolve().name or "run")).symlink_to(logdir.resolve(), target_is_directory=True)
            served = named
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", served, "--port", str(args.port),
                   "--host", args.host]
        code = _serve(command, args.verbose)
    sys.exit(code)


# What TensorFlow prints while it loads, before its log level applies (absl's "I0000 00:00:..." lines).
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:[\d.]+ )")


def _serve(command: list[str], verbose: bool) -> int:
    """TensorBoard as a child: its lines relayed (TensorFlow's start-up lines left out unless verbose), this
    process's signals passed on; its exit status."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace", env=env)

    def relay() -> None:
        for line in proc.stderr:
            if verbose or not NOISE.match(line):
                sys.stderr.write(line)
                sys.stderr.flush()

    threading.Thread(target=relay, daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    main()
