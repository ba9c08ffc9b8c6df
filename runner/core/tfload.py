"""Loading TensorFlow quietly: its C++ start-up lines (oneDNN, the CUDA stub, cpu_feature_guard) and the queue/compat
deprecation warnings are hidden unless ``verbose=true``, in every process that loads it: a run, a sweep's own
process (its report), a sweep's jobs on any launcher, and a cluster's tasks."""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator


def quiet_children(verbose: bool) -> None:
    """TensorFlow's C++ log level for this process and every process it starts (pool workers, submitit and SLURM
    jobs, Ray workers it starts, cluster tasks), unless the environment already sets one."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")


def xla_on_cpu(xla: bool) -> None:
    """hardware.xla: on the CPU, XLA's auto-clustering also needs TF_XLA_FLAGS=--tf_xla_cpu_global_jit, which
    TensorFlow reads when it loads (so a process that loaded it already clusters for GPUs only)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if xla and "--tf_xla_cpu_global_jit" not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_cpu_global_jit".strip()


@contextlib.contextmanager
def _keras_when_used() -> Iterator[None]:
    """While TensorFlow loads: its eager import of Keras's optimizers (for Keras models saved as SavedModels, which
    runner neither writes nor reads) is skipped, as TensorFlow skips it where Keras is missing. Keras, and the
    matplotlib it brings, then load on the first use of ``tf.keras``, which no run of runner's graph makes (on the
    test machine, 0.3-1.4 s of the 3.5-4.5 s of CPU that loading TensorFlow takes)."""
    real = importlib.import_module

    def skipping(name: str, package: str | None = None):
        if name in ("keras.src.optimizers", "tf_keras.src.optimizers"):
            raise ImportError(f"{name}: loaded when tf.keras is used")
        return real(name, package)

    importlib.import_module = skipping
    try:
        yield
    finally:
        importlib.import_module = real


def load_tensorflow(verbose: bool, xla: bool = False):
    """Imports TensorFlow, silenced unless verbose (and with XLA's CPU clustering for ``xla``), and returns it.

    Some C++ libraries log to stderr while TensorFlow loads, before any log level applies, so stderr is parked in
    a temporary file during the import and replayed only if the import fails.
    """
    quiet_children(verbose)
    xla_on_cpu(xla)
    if not verbose and "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as parked, _keras_when_used():
            os.dup2(parked.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                parked.seek(0)
                sys.stderr.write(parked.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    with _keras_when_used():
        import tensorflow as tf

    tf.get_logger().setLevel("INFO" if verbose else "ERROR")
    return tf
