"""A plain-text progress line on stderr for `wait(progress=True)`: redrawn in place with a
carriage return on a terminal, one line per change otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

from skillmix_client.types import Job

WIDTH = 30


def render(job: Job) -> str:
    fraction = min(max(job.progress.fraction, 0.0), 1.0)
    filled = round(fraction * WIDTH)
    bar = "#" * filled + "-" * (WIDTH - filled)
    line = f"{job.id} [{bar}] {fraction * 100:5.1f}% {job.state}"
    return f"{line}: {job.progress.message}" if job.progress.message else line


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last = ""

    def update(self, job: Job) -> None:
        line = render(job)
        if line == self._last:
            return
        if self._tty:
            self._stream.write("\r" + line.ljust(len(self._last)))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._last = line

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
