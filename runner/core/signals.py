"""SIGINT and SIGTERM: a run stops at a safe point, writes what it has, and exits with 128 + the signal number.

Outside the training or eval loop (data preparation, graph building), a signal raises :class:`Interrupted` at once:
data and checkpoints are written atomically, so nothing half-written is left. Inside a loop, :class:`StopSignals`
turns the signal into a flag the loop checks between steps. Python runs signal handlers only when the main thread
is back in Python, so a step blocked inside TensorFlow (an input queue that never fills) would never see the flag:
the signal also wakes a watcher thread (``signal.set_wakeup_fd``), which runs the loop's ``on_stop`` callbacks
(closing input queues releases a blocked step). If the loop has not reached its safe point ``grace_secs`` later,
or on a second signal (one more than a second after the first), the process exits at once; the last checkpoint
is kept.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("runner")
SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAME_STOP_SECS = 1.0  # signals this close to the first are the same stop, not a second one


class Interrupted(BaseException):
    """SIGINT/SIGTERM: the message says what was saved and how to continue; the exit status is 128 + signal.

    A BaseException, as KeyboardInterrupt is: code that handles errors (``except Exception``, a failed trial, the
    wrappers of OmegaConf and Hydra that re-raise an error as their own) never swallows or rewraps a stop."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM, ... for a signal number."""
    return signal.Signals(signum).name


def raise_interrupted(signum, frame):
    """A signal handler: raises :class:`Interrupted` where the main thread is."""
    raise Interrupted(f"{signal_name(signum)} while no training step ran; nothing was lost. Rerun the same command "
                      f"to continue.", signum)


def raise_on_signals() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` wherever the main thread is (the state outside loops)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, raise_interrupted)


class StopSignals(contextlib.AbstractContextManager):
    """While entered (main thread only): SIGINT/SIGTERM set :attr:`signum`; see the module's docstring."""

    def __init__(self, grace_secs: float = 30.0):
        self.signum: int | None = None
        self.grace_secs = grace_secs
        self._on_stop: list[Callable[[], None]] = []
        self._previous: dict = {}
        self._timer: threading.Timer | None = None
        self._acknowledged = threading.Event()
        self._first: float | None = None  # when the first signal arrived

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` from the watcher thread as soon as a signal arrives."""
        self._on_stop.append(callback)

    def check(self) -> None:
        """Raises :class:`Interrupted` if a signal arrived (and stops the grace countdown: the caller is at its safe
        point)."""
        if self.signum is not None:
            self.acknowledge()
            raise Interrupted(signal_name(self.signum), self.signum)

    def acknowledge(self) -> None:
        self._acknowledged.set()
        if self._timer:
            self._timer.cancel()

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; a job run in a worker thread is stopped by its host
        self._reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer
        self._old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        threading.Thread(target=self._watch, name="stop-signals", daemon=True).start()
        return self

    def __exit__(self, *exc):
        if not self._previous:
            return None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        self.acknowledge()
        self._writer.close()  # ends the watcher
        return None

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                data = b""
            if not data:
                self._reader.close()
                return
            for signum in data:
                if signum not in SIGNALS:
                    continue
                now = time.monotonic()
                if self._first is not None and now - self._first < SAME_STOP_SECS:
                    continue  # the same stop delivered twice (a terminal's Ctrl-C and a sweep's forwarding)
                if self._first is not None:
                    self._exit_now(signum, "a second signal")
                self._first = now
                self.signum = self.signum or signum
                for callback in self._on_stop:
                    with contextlib.suppress(Exception):
                        callback()
                if not self._acknowledged.is_set():
                    self._timer = threading.Timer(self.grace_secs, self._exit_now,
                                                  (signum, f"no safe point within {self.grace_secs:.0f} s"))
                    self._timer.daemon = True
                    self._timer.start()

    @staticmethod
    def _exit_now(signum: int, why: str) -> None:
        sys.stderr.write(f"stopped: {signal_name(signum)}, {why}: exiting at once (the last checkpoint is kept)\n")
        sys.stderr.flush()
        os._exit(128 + signum)
