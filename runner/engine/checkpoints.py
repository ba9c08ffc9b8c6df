"""A run's checkpoints: written with paths relative to the run dir and found by name inside it, so a moved or
copied run dir resumes and evaluates."""
from __future__ import annotations

import re
from pathlib import Path

import tensorflow as tf
import tensorflow.compat.v1 as v1

from runner.core.errors import RunnerError, op_error_text

CHECKPOINT_NAME = "model.ckpt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def make_saver(**kwargs) -> v1.train.Saver:
    """A Saver whose state file holds paths relative to the run dir, so a moved or copied run dir is whole."""
    return v1.train.Saver(save_relative_paths=True, **kwargs)


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints in run_dir/checkpoints, oldest first. The state file says which are complete (it
    is rewritten after each save); its paths are read as names in this dir, whatever dir wrote them."""
    directory = checkpoint_dir(run_dir)
    state = tf.train.get_checkpoint_state(str(directory))
    names = [Path(p).name for p in state.all_model_checkpoint_paths] if state else []
    found = [directory / n for n in names if Path(str(directory / n) + ".index").exists()]
    if found:
        return found
    # No usable state file (lost, or from an older layout): the checkpoints whose index exists, by step.
    steps = [int(m[1]) for p in directory.glob(f"{CHECKPOINT_NAME}-*.index")
             if (m := re.fullmatch(rf"{re.escape(CHECKPOINT_NAME)}-(\d+)\.index", p.name))]
    return [directory / f"{CHECKPOINT_NAME}-{step}" for step in sorted(steps)]


def latest_checkpoint(run_dir: str | Path) -> str | None:
    found = checkpoints(run_dir)
    return str(found[-1]) if found else None


def save(saver: v1.train.Saver, sess: v1.Session, run_dir: Path, step: int) -> None:
    """Writes the checkpoint of ``step``; a full disk or a read-only dir is a one-line error (the checkpoints
    written before are kept: a checkpoint counts only once the state file names it)."""
    try:
        checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)  # a sharded (cluster) saver does not make it
        saver.save(sess, str(checkpoint_dir(run_dir) / CHECKPOINT_NAME), global_step=step)
    except tf.errors.OpError as err:
        raise RunnerError(f"cannot write the checkpoint of step {step} in {checkpoint_dir(run_dir)}: "
                          f"{op_error_text(err)}; free some space or make the run dir writable (the earlier "
                          f"checkpoints are kept)") from None
