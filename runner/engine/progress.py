"""Progress: a tqdm bar with loss and examples/sec on a terminal, the tutorials' lines otherwise:
fully_connected_feed's ``Step N: loss = X (S sec; E examples/sec)`` or cifar10_train's
``DATE: step N, loss = X (E examples/sec; S sec/batch)``.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import sys

log = logging.getLogger("runner")


class Progress(contextlib.ExitStack):
    """Lines, or a bar once :meth:`start` says where the run starts (the session knows the resumed step)."""

    def __init__(self, mode: str, total: int, style: str = "mnist"):
        super().__init__()
        self.style = style
        self.use_bar = mode == "bar" or (mode == "auto" and sys.stdout.isatty())
        self.total = total
        self.bar = None

    def start(self, step: int) -> None:
        if self.use_bar and self.bar is None:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.enter_context(logging_redirect_tqdm())  # eval lines print above the bar
            self.bar = self.enter_context(tqdm(total=self.total, initial=step, unit="step", dynamic_ncols=True,
                                               file=sys.stdout))

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def report(self, step: int, loss: float, sec_per_step: float, examples_per_sec: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.2f}", examples_per_sec=f"{examples_per_sec:.1f}", refresh=False)
        elif self.style == "cifar10":
            log.info("%s: step %d, loss = %.2f (%.1f examples/sec; %.3f sec/batch)", datetime.datetime.now(), step,
                     loss, examples_per_sec, sec_per_step)
        else:
            log.info("Step %d: loss = %.2f (%.3f sec; %.1f examples/sec)", step, loss, sec_per_step,
                     examples_per_sec)
