"""Helpers shared by the tests: composed configs, command lines run as a user types them, and readers of what a run
wrote. Fixtures are in conftest.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from runner.config.hydra import compose_config

ROOT = Path(__file__).resolve().parent.parent
if not Path("/dev/nvidia0").exists():  # no GPU here: TensorFlow need not probe CUDA in every test process (~1 s each)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
TINY = ["dataset.num_train=1200", "dataset.num_test=300", "dataset.validation_size=200"]


def compose(*overrides: str):
    """The config `python -m runner OVERRIDES` would run, composed in-process."""
    return compose_config(list(overrides))


def option(group: str, name: str, **overrides):
    """A group option as its part is made from it: its schema instance, with the values of its YAML (where they
    live) and ``overrides`` (checked against the schema as a config is)."""
    return OmegaConf.to_object(OmegaConf.merge(compose(f"{group}={name}")[group], overrides))


def user_env(env: dict | None = None, unset: tuple[str, ...] = ()) -> dict:
    """This process's environment plus ``env``, without the variables in ``unset`` (``AS_USER``: the settings the
    tests make for speed and quiet, which a user's shell does not have)."""
    return {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}


AS_USER = ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, cwd: Path = ROOT,
            unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m runner ARGS`` as a subprocess (in ``cwd``: an empty folder for a command as a user types it)."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=user_env(env, unset))


def stop_when(args: list[str], wait_for: str, sig: int, cwd: Path = ROOT, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    """Starts ``python -m runner ARGS``, sends ``sig`` once it prints a line starting with ``wait_for`` (any line
    containing it, if it starts with '~'), and returns the finished process's output."""
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=user_env())
    matches = (lambda line: wait_for[1:] in line) if wait_for.startswith("~") else (
        lambda line: line.startswith(wait_for))
    try:
        out = []
        for line in proc.stdout:
            out.append(line)
            if matches(line):
                break
        proc.send_signal(sig)
        out.append(proc.stdout.read())
        return subprocess.CompletedProcess(proc.args, proc.wait(timeout=timeout), "".join(out), "")
    finally:
        proc.kill()


def sweep_dirs(cwd: Path) -> list[Path]:
    """The sweep dirs a multirun typed in ``cwd`` made under its default ``multirun/``."""
    return sorted(p for p in (cwd / "multirun").iterdir() if p.is_dir()) if (cwd / "multirun").is_dir() else []


# Python's own traceback, TensorFlow's C++ start-up lines (absl-style "I0000 00:00:..." and the oneDNN notice):
# what a quiet process never prints unless verbose=true.
NOISE = ("Traceback (most recent call last)", "oneDNN custom operations are on", "cpu_feature_guard",
         "Could not find cuda drivers", "failed call to cuInit")


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def submitit_logs(cwd: Path) -> str:
    """What a sweep's jobs printed where submitit keeps it (locally and on SLURM): the sweep dir's .submitit/."""
    return "".join(p.read_text() for p in cwd.glob("multirun/*/.submitit/*/*_log.*"))


def steps_saved(run_dir: Path) -> int:
    """The global step of a run dir's latest checkpoint."""
    from runner.engine.checkpoints import latest_checkpoint  # TensorFlow: loaded by the tests that need it

    return int(latest_checkpoint(run_dir).rsplit("-", 1)[1])


def one_complete_sweep(cwd: Path, jobs: int, proc: subprocess.CompletedProcess, logs: str = "") -> Path:
    """Checks a multirun typed in ``cwd``: it succeeded, quietly (its output and the jobs' ``logs``), into one
    sweep dir whose report lists every job completed, with no marker left; returns the sweep dir."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dirs = sweep_dirs(cwd)
    assert len(dirs) == 1, dirs  # one sweep, one sweep dir
    report = (dirs[0] / "report.md").read_text()
    assert f"{jobs} jobs, {jobs} completed, 0 failed, 0 interrupted, 0 incomplete." in report, report
    assert len(list(dirs[0].glob("*/summary.json"))) == jobs
    assert not (dirs[0] / ".running").exists() and not (dirs[0] / ".interrupted").exists()
    said = noise(proc.stdout + proc.stderr + logs)
    assert not said, said
    return dirs[0]



def pull(dataset, name: str, split: str, batch_size: int, training: bool, steps: int, **params):
    """``steps`` batches of a split through pipeline ``name`` (its YAML's settings, updated by ``params``); the
    Batch and the (images, labels) pulled."""
    import tensorflow as tf  # loaded by the tests that need it

    from runner.engine.session import session
    from runner.pipelines import PIPELINES

    graph = tf.Graph()
    with graph.as_default():
        pipeline = PIPELINES.get(name)(option("pipeline", name, **params), dataset, seed=3)
        batch = pipeline.build(split, batch_size, training)
    out = []
    with session(graph, None, [batch]) as (sess, _):
        for _ in range(steps):
            out.append(sess.run(batch.pull(), batch.feed() if batch.feed else None)[:2])
    return batch, out


def events(directory: Path):
    """TensorBoard's own reader of the event files in ``directory``, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the tensorboard extra

    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                                  "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag: str) -> dict[int, float]:
    """A scalar tag's values by step."""
    return {e.step: e.value for e in accumulator.Scalars(tag)}


def project_copy(folder: Path) -> Path:
    """A copy of the project (runner/, conf/, experiments/) in ``folder``, for a test that adds a file of its own
    (an experiment) where the other tests, running at the same time, do not see it. Run it with ``cwd=`` the copy."""
    for name in ("runner", "conf", "experiments"):
        shutil.copytree(ROOT / name, folder / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def write_jpeg_folder(root: Path, num_train: int, num_test: int, size: int = 96, classes: int = 4) -> Path:
    """An image folder of size x size JPEGs (root/train/<class>/, root/test/<class>/): each class a colour
    gradient of its own plus noise, so the images take JPEG's real decoding work. With dataset.image_size=[32,32]
    every step decodes and resizes them: an input-bound case for the bench and mode=tune."""
    import numpy as np
    import tensorflow as tf  # loaded by the tests that need it

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    for split, n in (("train", num_train), ("test", num_test)):
        for i in range(n):
            label = i % classes
            colour = np.array([(label + 1) / classes, 1 - label / classes, 0.5])
            image = ramp[None, :, None] * ramp[:, None, None] * colour * 200 + rng.normal(0, 25, (size, size, 3))
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            encoded = tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality=90)
            (folder / f"{i:05d}.jpg").write_bytes(encoded.numpy())
    return root
