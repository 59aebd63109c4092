"""Runs one job attempt inside a worker: claim the lease, keep it alive, call the handler,
record the outcome. The Celery task is a one-line call into `execute`.

A verification's training units (service/store/training_runs.py) run here too, under the
same rules with leases of their own: `execute_unit` claims one, trains its seeds
(handlers/verification.py `run_training_unit`) and, if it was the last of its job,
finishes the job in this process (`take_finish`, then the job's handler as any attempt)."""

from __future__ import annotations

import contextvars
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from curation.atomic import DiskFull, is_disk_full
from service.db import describe_error, is_transient, session_scope
from service.logs import log_context
from service.models import Job, JobState, TrainingRun
from service.settings import Settings, get_settings
from service.store import jobs, training_runs
from service.worker.handlers import KINDS
from service.worker.handlers.verification import run_training_unit
from service.worker.kinds import Detached, FollowUp, JobInterrupted, JobKind, Start, Waiting

log = logging.getLogger("skillmix.runner")

WRITE_ATTEMPTS = 4
"""Tries of a lease-fenced write (progress, lease renewal, the final result) that meets
transient database errors."""
WRITE_BACKOFF_SECONDS = 0.25
"""The wait before the second try, doubled before each next one (1.75 s in all: well inside
a lease)."""


class ClaimUnavailable(Exception):
    """The database could not be reached to claim the job (a transient error): nothing ran
    and nothing was taken, so the task may try again later (service/worker/tasks.py)."""


def new_owner() -> str:
    """A lease owner: unique, and saying which process holds the lease (pid@host), for a
    person reading the row and for tests that kill the holder."""
    return f"{os.getpid()}@{socket.gethostname()[:30]}:{secrets.token_hex(8)}"


class _Held:
    """Leased work under way in this process (a job attempt or a training unit): progress
    writes that renew the lease and notice its loss, retried over database blips."""

    name: str
    owner: str
    settings: Settings
    lost: threading.Event
    _last_write: float

    def _write_progress(self, session: Session, fraction: float, message: str) -> bool:
        raise NotImplementedError

    def renew(self, session: Session) -> bool:
        raise NotImplementedError

    def progress(self, fraction: float, message: str = "") -> None:
        if self.lost.is_set():
            raise JobInterrupted("lease lost")
        now = time.monotonic()
        # Progress is advisory: write at most twice a second, but always the last step.
        if fraction < 1.0 and now - self._last_write < 0.5:
            return
        self._last_write = now
        held = self.write(
            "progress write", lambda session: self._write_progress(session, fraction, message)
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
                log.warning("%s of %s failed (%s); retry in %.2fs", what, self.name, reason, delay)
                if self.lost.wait(delay):
                    return False


class RunContext(_Held):
    def __init__(self, job: Job, owner: str, settings: Settings) -> None:
        self.job_id = job.id
        self.name = f"job {job.id}"
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

    def _write_progress(self, session: Session, fraction: float, message: str) -> bool:
        lease = self.settings.job_lease_seconds
        return jobs.report_progress(session, self.job_id, self.owner, fraction, message, lease)

    def renew(self, session: Session) -> bool:
        return jobs.renew_lease(session, self.job_id, self.owner, self.settings.job_lease_seconds)

    def detach(self, message: str) -> bool:
        """Hand the job over to its training units (service/store/training_runs.py)."""
        return self.write(
            "hand-over",
            lambda session: training_runs.detach(session, self.job_id, self.owner, message),
        )

    def wait_for(self, message: str, start: Start) -> bool:
        """Run `start` and put the job back to waiting for the jobs it returns, in one
        transaction fenced on this attempt's lease; send them once committed."""
        sends: list[Callable[[], None]] = []

        def write(session: Session) -> bool:
            needs, send = start(session)
            if not jobs.wait_again(session, self.job_id, self.owner, needs, message):
                session.rollback()  # another attempt holds the job: it starts the work
                return False
            session.commit()
            sends.append(send)
            return True

        held = self.write("wait", write)
        for send in sends[-1:]:
            send()
        return held

    def add_artifact(
        self, name: str, path: Path, media_type: str, *, deferred: bool = False
    ) -> None:
        self.artifacts = [a for a in self.artifacts if a["name"] != name]
        size = None if deferred else path.stat().st_size
        self.artifacts.append(
            {"name": name, "path": str(path), "media_type": media_type, "size": size}
        )


class UnitContext(_Held):
    """What a training unit's work sees: the unit (its job, verification, arm, size, seeds)
    and `progress`, which writes the unit's and its job's progress and renews the unit's
    lease; it raises JobInterrupted once the unit was cancelled or taken by another
    attempt (a training run then checkpoints and stops)."""

    def __init__(self, unit: TrainingRun, owner: str, settings: Settings) -> None:
        self.unit_id, self.job_id, self.verification_id = unit.id, unit.job_id, unit.verification_id
        self.name = f"training run {unit.id}"
        self.arm, self.size, self.seeds = unit.arm, unit.size, list(unit.seeds)
        self.owner = owner
        self.settings = settings
        self.lost = threading.Event()
        self._last_write = 0.0

    def _write_progress(self, session: Session, fraction: float, message: str) -> bool:
        return training_runs.report_progress(
            session, self.unit_id, self.job_id, self.owner, fraction, message,
            self.settings.job_lease_seconds,
        )  # fmt: skip

    def renew(self, session: Session) -> bool:
        lease = self.settings.job_lease_seconds
        return jobs.renew_lease(session, self.unit_id, self.owner, lease, table=TrainingRun)


def _keep_lease(ctx: _Held, stop: threading.Event) -> None:
    interval = max(ctx.settings.job_lease_seconds / 3, 0.2)
    while not stop.wait(interval):
        try:
            held = ctx.write("lease renewal", ctx.renew)
        except Exception:  # the database is still away: try again at the next beat
            log.exception("lease renewal failed for %s", ctx.name)
            continue
        if not held:
            ctx.lost.set()
            return


def execute(job_id: str, settings: Settings | None = None) -> str:
    """Run one attempt of `job_id`; return what happened (for logs and tests)."""
    settings = settings or get_settings()
    owner = new_owner()
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
    return _attempt(job_id, owner, settings)


def _attempt(job_id: str, owner: str, settings: Settings) -> str:
    """Run the job's handler for `owner`, who holds its lease."""
    with session_scope() as session:
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


def _beat(ctx: _Held, stop: threading.Event) -> threading.Thread:
    # The lease thread logs under the work's context too.
    beat = threading.Thread(
        target=contextvars.copy_context().run, args=(_keep_lease, ctx, stop), daemon=True
    )
    beat.start()
    return beat


def _run(ctx: RunContext, kind: JobKind | None, kind_name: str) -> str:
    stop = threading.Event()
    beat = _beat(ctx, stop)
    try:
        if kind is None:
            raise ValueError(f"unknown job kind {kind_name!r}")
        result = kind.handler(ctx)
        state, error = JobState.succeeded, None
    except Detached:
        # The handler handed the job over to its training units: no final write.
        return "detached"
    except Waiting:
        # The handler started more work and put the job back to wait for it: no final write.
        return "waiting"
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
        if state is JobState.succeeded and kind is not None and kind.follow_up is not None:
            _follow_up(kind.follow_up, ctx.job_id, result or {})
    return state.value if done else "interrupted"


def _follow_up(follow_up: FollowUp, job_id: str, result: dict[str, Any]) -> None:
    """The kind's work after its result is stored (JobKind.follow_up); best effort."""
    started = time.monotonic()
    # Logged as "follow-up of job <id>", not "job <id>: ...": that line, once per attempt,
    # is the job's outcome (logged after this).
    try:
        follow_up(job_id, result)
    except Exception:
        log.exception("follow-up of job %s failed (done on first request instead)", job_id)
    else:
        log.info("follow-up of job %s done in %.1fs", job_id, time.monotonic() - started)


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


def execute_unit(unit_id: str, settings: Settings | None = None) -> str:
    """Run one attempt of the training unit `unit_id`; return what happened. The worker
    whose unit ends its job's training last finishes the job here (report and verdicts)."""
    settings = settings or get_settings()
    owner = new_owner()
    with session_scope() as session:
        try:
            claimed = jobs.claim(session, unit_id, owner, settings.job_lease_seconds, TrainingRun)
        except Exception as exc:
            if is_transient(exc):
                raise ClaimUnavailable(
                    f"cannot claim training run {unit_id}: {describe_error(exc)}"
                ) from exc
            raise
        unit = session.get(TrainingRun, unit_id)
        if unit is None:
            return "missing"
        session.refresh(unit)
        if not claimed:
            if unit.state == JobState.running.value and unit.attempts >= unit.max_attempts:
                training_runs.fail_exhausted(session, unit)
                return "exhausted"
            return f"skipped ({unit.state})"
        ctx = UnitContext(unit, owner, settings)
        attempt = unit.attempts
    with log_context(job_id=ctx.job_id, job_kind="verification", training_run=unit_id,
                     job_attempt=attempt):  # fmt: skip
        log.info("training run %s attempt %s: %s/%s seeds %s", unit_id, attempt, ctx.arm,
                 ctx.size, ctx.seeds)  # fmt: skip
        started = time.monotonic()
        outcome = _run_unit(ctx)
        log.info("training run %s: %s after %.1fs", unit_id, outcome, time.monotonic() - started)
    if outcome == JobState.succeeded.value:
        _finish_job_if_last(ctx.job_id, settings)
    return outcome


def _run_unit(ctx: UnitContext) -> str:
    stop = threading.Event()
    beat = _beat(ctx, stop)
    try:
        run_training_unit(ctx)
        state, error = JobState.succeeded, None
    except JobInterrupted:
        return "interrupted"
    except Exception as exc:
        if is_transient(exc):
            log.warning("%s: attempt given up, the database is unreachable (%s); it runs "
                        "again once its lease runs out", ctx.name, describe_error(exc))  # fmt: skip
            return "interrupted"
        log.exception("%s failed", ctx.name)
        state, error = JobState.failed, describe_failure(exc, ctx.settings)
    finally:
        stop.set()
        beat.join()
    done = ctx.write(
        "final write",
        lambda session: jobs.finish(
            session, ctx.unit_id, ctx.owner, state=state, error=error, table=TrainingRun
        ),
    )
    if not done:
        return "interrupted"
    if state is JobState.failed:
        assert error is not None

        def fail(session: Session) -> bool:
            unit = session.get(TrainingRun, ctx.unit_id)
            assert unit is not None
            return training_runs.fail_job(session, unit, error)

        if ctx.write("failing its job", fail):
            _release_dependents(ctx.job_id)
    return state.value


def _finish_job_if_last(job_id: str, settings: Settings) -> str | None:
    """Finish the job here if every unit of it has succeeded and no other worker took it
    first (training_runs.take_finish); what the attempt did, None if it was not ours."""
    owner = new_owner()
    try:
        with session_scope() as session:
            taken = training_runs.take_finish(session, job_id, owner, settings.job_lease_seconds)
    except Exception:  # the sweeper sends the job again (training_runs.settle_detached)
        log.exception("could not take job %s to finish it", job_id)
        return None
    if not taken:
        return None
    return _attempt(job_id, owner, settings)


def execute_all(job_id: str, settings: Settings | None = None) -> str:
    """Run a job here and, if it handed its work to training units, each of them here too,
    one after another (until none is left queued): the job's final state. For scripts
    and tests that run work without a worker; a deployment's workers share the units."""
    execute(job_id, settings)
    tried = set[str]()
    while True:
        with session_scope() as session:
            units = training_runs.units_of(session, job_id)
            queued = [u.id for u in units if u.state == JobState.queued.value]
        if not queued or set(queued) <= tried:
            break
        for unit_id in queued:
            tried.add(unit_id)
            execute_unit(unit_id, settings)
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.state if job is not None else "missing"
