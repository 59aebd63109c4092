"""What `wait` does between fetches, shared by the sync and async clients: keep the
deadline, draw progress, and decide when the event stream has failed and polling takes over."""

from __future__ import annotations

import time

import httpx

from skillmix_client._exceptions import APIConnectionError, APIError, WaitTimeoutError
from skillmix_client._logs import log
from skillmix_client._progress import ProgressBar
from skillmix_client.types import Job

DEFAULT_POLL_INTERVAL = 1.0


class Watch:
    def __init__(self, job_id: str, *, timeout: float | None, progress: bool) -> None:
        self.job_id, self.timeout = job_id, timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = ProgressBar() if progress else None
        self.last: Job | None = None

    def see(self, job: Job) -> bool:
        """Record a snapshot; True once it is final. Raises when the deadline has passed."""
        self.last = job
        if self.bar:
            self.bar.update(job)
        if job.is_final:
            return True
        self.check()
        return False

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise WaitTimeoutError(self.job_id, self.timeout or 0.0, self.last)

    def stream_timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """The client's timeout, with reads bounded by the time left, so a silent stream
        cannot outlive the deadline."""
        if self.deadline is None:
            return base
        left = max(self.deadline - time.monotonic(), 0.1)
        read = left if base.read is None else min(base.read, left)
        return httpx.Timeout(base.connect, read=read, write=base.write, pool=base.pool)

    def sleep_for(self, interval: float) -> float:
        if self.deadline is None:
            return interval
        return max(min(interval, self.deadline - time.monotonic()), 0.0)

    def stream_failed(self, exc: Exception) -> bool:
        """Whether to fall back to polling after `exc` from the event stream. A rejected key
        is final; anything else (a proxy that cuts or buffers the stream, a server without
        events) is worth polling, which also surfaces real errors such as a missing job."""
        if isinstance(exc, APIError) and exc.status in (401, 403):
            return False
        if isinstance(exc, (APIConnectionError, APIError)):
            log.debug("event stream for job %s failed (%s); polling instead", self.job_id, exc)
            return True
        return False

    def close(self) -> None:
        if self.bar:
            self.bar.close()
