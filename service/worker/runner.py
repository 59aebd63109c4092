"""Runs one job attempt inside a worker: claim the lease, keep it alive, call the handler,
record the outcome. The Celery task is a one-line call into `execute`."""

from __future__ import annotations

import contextvars
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from curation.atomic import DiskFull, is_disk_full
from service.db import describe_error, is_transient, session_scope
from service.logs import log_context
from service.models import Job, JobState
from service.settings import Settings, get_settings
from service.store import jobs
from service.worker.handlers import KINDS
from service.worker.kinds import JobKind

log = logging.getLogger("skillmix.runner")

WRITE_ATTEMPTS = 4
"""Tries of a lease-fenced write (progress, lease renewal, the final result) that meets
transient database errors."""
WRITE_BACKOFF_SECONDS = 0.25
"""The wait before the second try, doubled before each next one (1.75 s in all: well inside
a lease)."""


class JobInterrupted(Exception):
    """The job was cancelled, or this worker lost its lease to another attempt."""


class ClaimUnavailable(Exception):
    """The database could not be reached to claim the job (a transient error): nothing ran
    and nothing was taken, so the task may try again later (service/worker/tasks.py)."""


class RunContext:
    def __init__(self, job: Job, owner: str, settings: Settings) -> None:
        self.job_id = job.id
        self.project_id = job.project_id
        self.params: dict[str, Any] = dict(job.params or {})
        self.owner = owner
        self.settings = settings
        self.artifact_dir = settings.artifacts_dir / job.id
        # An earlier, lost attempt may have left partial files; its artifacts are not ours.
        if self.artifact_dir.exists():
            shutil.rmtree(self.artifact_dir)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts: list[dict[str, Any]] = []
        self.lost = threading.Event()
        self._last_write = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        if self.lost.is_set():
            raise JobInterrupted("lease lost")
        now = time.monotonic()
        # Progress is advisory: write at most twice a second, but always the last step.
        if fraction < 1.0 and now - self._last_write < 0.5:
            return
        self._last_write = now
        held = self.write(
            "progress write",
            lambda session: jobs.report_progress(
                session, self.job_id, self.owner, fraction, message, self.settings.job_lease_seconds
            ),
        )
        if not held:
            self.lost.set()
            raise JobInterrupted("cancelled or lease lost")

    def write(self, what: str, write: Callable[[Session], bool]) -> bool:
        """Run one lease-fenced write (`write` says whether this worker still holds the job)
        in a fresh session, again after a transient database error, a few times with backoff.

        Only errors are retried: a write that finds the job cancelled or taken by another
        attempt answers False at once. The UPDATEs are conditional on the lease, so running
        one again is harmless. Gives up (False) if the lease is found lost meanwhile."""
        attempt = 0
        while True:
            try:
                with session_scope() as session:
                    return write(session)
            except Exception as exc:
                attempt += 1
                if attempt >= WRITE_ATTEMPTS or not is_transient(exc):
                    raise
                delay = WRITE_BACKOFF_SECONDS * 2 ** (attempt - 1)
                reason = describe_error(exc)
                log.warning(
                    "%s of job %s failed (%s); retry in %.2fs", what, self.job_id, reason, delay
                )
                if self.lost.wait(delay):
                    return False

    def add_artifact(self, name: str, path: Path, media_type: str) -> None:
        self.artifacts = [a for a in self.artifacts if a["name"] != name]
        self.artifacts.append(
            {"name": name, "path": str(path), "media_type": media_type, "size": path.stat().st_size}
        )


def _keep_lease(ctx: RunContext, stop: threading.Event) -> None:
    interval = max(ctx.settings.job_lease_seconds / 3, 0.2)
    while not stop.wait(interval):
        try:
            held = ctx.write(
                "lease renewal",
                lambda session: jobs.renew_lease(
                    session, ctx.job_id, ctx.owner, ctx.settings.job_lease_seconds
                ),
            )
        except Exception:  # the database is still away: try again at the next beat
            log.exception("lease renewal failed for job %s", ctx.job_id)
            continue
        if not held:
            ctx.lost.set()
            return


def execute(job_id: str, settings: Settings | None = None) -> str:
    """Run one attempt of `job_id`; return what happened (for logs and tests)."""
    settings = settings or get_settings()
    owner = secrets.token_hex(8)
    with session_scope() as session:
        try:
            claimed = jobs.claim(session, job_id, owner, settings.job_lease_seconds)
        except Exception as exc:
            # Had the claim's commit reached the database after all, a try again would find
            # the job held under a lease nobody renews: sent again once that runs out.
            if is_transient(exc):
                raise ClaimUnavailable(f"cannot claim job {job_id}: {describe_error(exc)}") from exc
            raise
        if not claimed:
            job = session.get(Job, job_id)
            if job is None:
                return "missing"
            if job.state == JobState.running.value and job.attempts >= job.max_attempts:
                jobs.fail_exhausted(session, job_id)
                return "exhausted"
            return f"skipped ({job.state})"
        job = session.get(Job, job_id)
        assert job is not None
        session.refresh(job)
        kind = KINDS.get(job.kind)
        ctx = RunContext(job, owner, settings)
        kind_name, attempt = job.kind, job.attempts
    # Every log line written while the job runs (by any library, in this thread) names it.
    with log_context(job_id=job_id, job_kind=kind_name, job_attempt=attempt):
        log.info("job %s attempt %s: %s", job_id, attempt, kind_name)
        started = time.monotonic()
        outcome = _run(ctx, kind, kind_name)
        log.info("job %s: %s after %.1fs", job_id, outcome, time.monotonic() - started)
    return outcome


def _run(ctx: RunContext, kind: JobKind | None, kind_name: str) -> str:
    stop = threading.Event()
    # The lease thread logs under the job's context too.
    beat = threading.Thread(
        target=contextvars.copy_context().run, args=(_keep_lease, ctx, stop), daemon=True
    )
    beat.start()
    try:
        if kind is None:
            raise ValueError(f"unknown job kind {kind_name!r}")
        result = kind.handler(ctx)
        state, error = JobState.succeeded, None
    except JobInterrupted:
        return "interrupted"
    except Exception as exc:
        if is_transient(exc):
            # The database went away under the handler (its own reads, or a progress write
            # whose retries ran out): the work is not at fault. Give the attempt up without
            # a final write; its lease runs out and the sweeper sends the job again (up to
            # max_attempts), which resumes from what this attempt completed. Recording
            # `failed` here, once the database is back, would end the job for a blip.
            log.warning(
                "job %s: attempt given up, the database is unreachable (%s); it runs again "
                "once its lease runs out",
                ctx.job_id,
                describe_error(exc),
            )
            return "interrupted"
        log.exception("job %s failed", ctx.job_id)
        result, state, error = None, JobState.failed, describe_failure(exc, ctx.settings)
    finally:
        stop.set()
        beat.join()
    # Retried like progress: a blip here would throw away the whole attempt's work.
    done = ctx.write(
        "final write",
        lambda session: jobs.finish(
            session,
            ctx.job_id,
            ctx.owner,
            state=state,
            result=result,
            error=error,
            artifacts=ctx.artifacts,
        ),
    )
    if done:
        _release_dependents(ctx.job_id)
    return state.value if done else "interrupted"


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """The job's `error`: the exception's type and message. A full disk reads as `DiskFull`
    (curation.atomic), naming the file and the space, also when a library let the bare
    OSError through (then naming the file if the error does, else the data directory)."""
    cause: BaseException | None = exc
    for _ in range(20):  # the chain of causes, not followed round a cycle
        if cause is None or isinstance(cause, DiskFull):
            break
        cause = cause.__cause__ or cause.__context__
    else:
        cause = None
    if cause is None and is_disk_full(exc):
        assert isinstance(exc, OSError)
        filename = exc.filename if isinstance(exc.filename, str) else None
        cause = DiskFull(
            filename or settings.resolved_data_dir,
            what=None if filename else "a file of this job, under the data directory",
            code=exc.errno,
        )
    failure = exc if cause is None else cause
    return f"{type(failure).__name__}: {failure}"


def _release_dependents(job_id: str) -> None:
    """Send the jobs that waited for this one (or fail them, if it failed). Best effort: the
    sweeper settles whatever this misses."""
    try:
        with session_scope() as session:
            sent = jobs.release_dependents(session, job_id)
    except Exception:
        log.exception("could not release the jobs waiting for job %s", job_id)
        return
    if sent:
        log.info("job %s: sent %d job(s) that waited for it", job_id, sent)
