"""``make bench-compare``: runner against what its users would otherwise run, and a real run against the bench,
each pairing measured in alternating rounds in one process tree, each ratio with its 95% interval.

Pairings (on the CIFAR-10 tutorial's model, ``dataset=shapes``, batch 128, the tf_data pipeline):
- ``fp32``: ``python -m runner`` training against Keras 3 ``model.fit`` (runner/perf/keras_cifar_fit.py), the
  steady-state examples/sec of steps 11..STEPS of each;
- ``bf16``: the same with ``hardware.precision=bf16`` against Keras's ``mixed_bfloat16`` policy;
- ``run/bench``: a real training run (hooks, summaries, progress lines) against the bench's training figure for the
  same pipeline, both measured by one ``mode=bench bench.training_run=true`` (each against the bound's windows
  around it).

Each round runs every pairing once, the two sides' order alternating from round to round; a pairing's ratio is the
mean of its per-round ratios, with Student's t 95% interval over the rounds. Runs go to a temporary folder; the
table and ``compare.json`` go to ``--out``.

    python -m runner.perf.compare [--rounds 5] [--steps 60] [--pairings fp32,bf16,run/bench] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.core.files import write_json, write_text
from runner.core.stats import summarize
from runner.core.system import cpu_flags, cpu_model

PAIRINGS = ("fp32", "bf16", "run/bench")
RUNNER = [sys.executable, "-m", "runner", "dataset=shapes", "pipeline=tf_data", "eval_splits=[]"]
KERAS = [sys.executable, "-m", "runner.perf.keras_cifar_fit"]
WARMUP_STEPS = 10  # as the Keras side: steps 11.. are timed


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides a precision's speed on the CPU


def _run(command: list[str], env: dict | None = None) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"bench-compare: {' '.join(command)} failed (exit {proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def runner_rate(work: Path, steps: int, precision: str) -> float:
    """A runner training run's steady-state examples/sec: over its progress windows after the warm-up, all the
    examples over all the time (the harmonic mean of the windows' rates, as the Keras side's span)."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    _run([*RUNNER, f"max_steps={steps}", f"checkpoint_every={steps}", "log_every=10",
          f"hardware.precision={precision}", f"run_dir={run_dir}"])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [m["examples_per_sec"] for m in lines if "examples_per_sec" in m and m["step"] > WARMUP_STEPS]
    return statistics.harmonic_mean(rates)


def keras_rate(data_dir: str, steps: int, precision: str) -> float:
    out = _run([*KERAS, data_dir, str(steps)], env={"KERAS_POLICY": "mixed_bfloat16"} if precision == "bf16" else {})
    return float(out.split("keras fit:")[1].split()[0])


def run_and_bench(work: Path, steps: int) -> tuple[float, float]:
    """(a real run's examples/sec, the bench's training figure) of one ``mode=bench bench.training_run=true``."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=work))
    windows = max(2, (steps - WARMUP_STEPS) // 10)
    _run([sys.executable, "-m", "runner", "mode=bench", "dataset=shapes", "bench.pipelines=[tf_data]",
          "bench.training_run=true", "bench.stages=false", f"bench.warmup_steps={WARMUP_STEPS}",
          f"bench.windows={windows}", "bench.steps_per_window=10", f"run_dir={run_dir}"])
    p = json.loads((run_dir / "bench.json").read_text())["pipelines"]["tf_data"]
    return p["training_run_ratio_to_bench"], p["train_examples_per_sec"]


def shapes_dir() -> str:
    """The folder of the shapes dataset's CIFAR-format files (made now if missing), which both sides read."""
    from runner.config.hydra import compose_config
    from runner.run.data import build_dataset

    dataset = build_dataset(compose_config(["dataset=shapes"]))
    dataset.prepare()
    return str(dataset.data_dir)


def compare(rounds: int, steps: int, pairings: list[str]) -> dict:
    data_dir = shapes_dir()
    samples: dict[str, list[tuple[float, float]]] = {p: [] for p in pairings}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        work = Path(tmp)
        for r in range(rounds):
            for pairing in pairings:
                if pairing == "run/bench":
                    ratio, bench_rate = run_and_bench(work, steps)
                    samples[pairing].append((ratio * bench_rate, bench_rate))
                else:
                    sides = [lambda p=pairing: runner_rate(work, steps, p),
                             lambda p=pairing: keras_rate(data_dir, steps, p)]
                    order = sides if r % 2 == 0 else sides[::-1]
                    first, second = order[0](), order[1]()
                    samples[pairing].append((first, second) if r % 2 == 0 else (second, first))
                a, b = samples[pairing][-1]
                print(f"round {r + 1}/{rounds} {pairing}: {a:,.1f} vs {b:,.1f} examples/sec = {a / b:.3f}",
                      flush=True)
    out = {"cpu": cpu_model(), "cpu_flags": sorted((cpu_flags() or set()) & set(SPEED_FLAGS)), "rounds": rounds,
           "steps": steps, "wall_time_sec": time.time() - started, "pairings": {}}
    for pairing, pairs in samples.items():
        ratio = summarize([a / b for a, b in pairs])
        out["pairings"][pairing] = {"ratio": ratio.mean, "interval": [ratio.low, ratio.high],
                                    "a_examples_per_sec": statistics.fmean(a for a, _ in pairs),
                                    "b_examples_per_sec": statistics.fmean(b for _, b in pairs),
                                    "pairs": [list(p) for p in pairs]}
    return out


SIDES = {"fp32": ("runner fp32", "Keras fit fp32"), "bf16": ("runner bf16", "Keras fit mixed_bfloat16"),
         "run/bench": ("real run", "bench's train figure")}


def table(out: dict) -> str:
    lines = [f"{out['cpu']} ({', '.join(out['cpu_flags']) or 'no AVX flags read'}), {out['rounds']} rounds, "
             f"{out['steps']} steps each, {out['wall_time_sec']:.0f} s",
             f"{'pairing':<10} {'a':<12} {'a ex/s':>9} {'b':<24} {'b ex/s':>9} {'a / b':>7}  95% interval",
             "-" * 92]
    for pairing, p in out["pairings"].items():
        a, b = SIDES[pairing]
        low, high = p["interval"]
        lines.append(f"{pairing:<10} {a:<12} {p['a_examples_per_sec']:>9,.1f} {b:<24} {p['b_examples_per_sec']:>9,.1f} "
                     f"{p['ratio']:>7.3f}  {low:.3f}-{high:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.perf.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every pairing (at least 2)")
    parser.add_argument("--steps", type=int, default=60, help="training steps of each run (at least 30)")
    parser.add_argument("--pairings", default=",".join(PAIRINGS), help=f"some of {','.join(PAIRINGS)}")
    parser.add_argument("--out", default=f"outputs/bench-compare/{time.strftime('%Y-%m-%d/%H-%M-%S')}")
    args = parser.parse_args(argv)
    pairings = [p for p in args.pairings.split(",") if p]
    unknown = [p for p in pairings if p not in PAIRINGS]
    if unknown or not pairings:
        parser.error(f"--pairings {args.pairings}: choose from {','.join(PAIRINGS)}")
    if args.rounds < 2 or args.steps < 30:
        parser.error("--rounds must be at least 2 (for an interval) and --steps at least 30 (10 warm-up steps, then "
                     "whole windows of 10)")
    out = compare(args.rounds, args.steps, pairings)
    text = table(out)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "compare.json", out)
    write_text(Path(args.out) / "compare.txt", text + "\n")
    print(f"Results in {args.out} (compare.json, compare.txt)")


if __name__ == "__main__":
    main()
