"""Closing what may take long to close, without being held up by it: the close goes on in a background thread, and
a process whose work is done may end without waiting for it (runner.cli.app.program)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("runner")

CLOSE_WAIT_SECS = 0.5  # how long a close may hold up the caller; the rest goes on in the background
_closing: list[threading.Thread] = []


def close_soon(close: Callable[[], None]) -> None:
    """Runs ``close``, waiting CLOSE_WAIT_SECS at most; a close that takes longer goes on in the background. Its
    error, when it ends in time, is raised here.

    A TensorFlow session's close can take up to a minute with tf.data's autotuner on: destroying an iterator joins
    its autotuning thread, and the cancellation does not always cut that thread's sleep short (up to 60 s between
    optimizations, once a run has gone on for a while). Nothing of a run waits in the session by then: the hooks
    have written the checkpoint and the summaries before the session closes."""
    failed: list[Exception] = []

    def closing() -> None:
        try:
            close()
        except Exception as err:  # noqa: BLE001  raised below if the close ends in time
            failed.append(err)

    thread = threading.Thread(target=closing, name="session-close", daemon=True)
    thread.start()
    thread.join(CLOSE_WAIT_SECS)
    if thread.is_alive():
        log.debug("still closing (tf.data's autotuning thread); going on without waiting")
        _closing.append(thread)
    elif failed:
        raise failed[0]


def still_closing() -> bool:
    """Whether a close is still going on in the background: the process may then end without waiting for it."""
    _closing[:] = [t for t in _closing if t.is_alive()]
    return bool(_closing)
