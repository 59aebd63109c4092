"""A plain-text progress line on stderr for `wait(progress=True)`: redrawn in place with a
carriage return on a terminal. Elsewhere (logs, CI) every line stays, so it prints sparsely:
the first snapshot, every change of state, and otherwise only when progress has moved by
`PIPE_STEP` or `PIPE_INTERVAL` seconds have passed since the last line; on close, the last
snapshot if it was held back (a wait that timed out says where the job was)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from skillmix_client.types import Job

WIDTH = 30
PIPE_STEP = 0.1
"""Off a terminal, print again once progress has moved by this fraction (every 10%)..."""
PIPE_INTERVAL = 30.0
"""...or once this many seconds have passed since the last line (and the line changed)."""


def render(job: Job) -> str:
    fraction = _fraction(job)
    filled = round(fraction * WIDTH)
    bar = "#" * filled + "-" * (WIDTH - filled)
    line = f"{job.id} [{bar}] {fraction * 100:5.1f}% {job.state}"
    return f"{line}: {job.progress.message}" if job.progress.message else line


def _fraction(job: Job) -> float:
    return min(max(job.progress.fraction, 0.0), 1.0)


class ProgressBar:
    def __init__(
        self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._clock = clock
        self._last = ""
        # Off a terminal: the last printed snapshot (state, fraction, when), and the line
        # of a later snapshot held back, if any.
        self._printed: tuple[str, float, float] | None = None
        self._held = ""

    def update(self, job: Job) -> None:
        line = render(job)
        if line == self._last:
            return
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)))
            self._stream.flush()
        elif self._due(job):
            self._print(line)
            self._printed = (job.state, _fraction(job), self._clock())
            self._held = ""
        else:
            self._held = line
        self._last = line

    def _due(self, job: Job) -> bool:
        if self._printed is None:
            return True
        state, fraction, at = self._printed
        return (
            job.state != state
            or abs(_fraction(job) - fraction) >= PIPE_STEP - 1e-9
            or self._clock() - at >= PIPE_INTERVAL
        )

    def _print(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
        elif self._held:
            self._print(self._held)
            self._held = ""
