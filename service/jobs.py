"""Job records: the state machine `queued -> running -> succeeded | failed | cancelled`.

Every transition is one conditional UPDATE, so two processes can never both move a job:
a worker *claims* a job by taking its lease, and only the lease holder may write progress
or a result. A lease that runs out means the worker was lost; the job is then claimed
again (by a redelivered message or by the sweeper) until `max_attempts` is reached.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobState, Project, utcnow

ACTIVE = (JobState.queued.value, JobState.running.value)


def create_job(
    session: Session,
    *,
    project_id: str,
    kind: str,
    queue: str,
    params: dict[str, Any],
    max_attempts: int,
) -> Job:
    job = Job(
        project_id=project_id,
        kind=kind,
        queue=queue,
        params=params,
        max_attempts=max_attempts,
        state=JobState.queued.value,
    )
    session.add(job)
    session.flush()
    return job


def count_active_locked(session: Session, project_id: str) -> int:
    """The project's queued and running jobs, counted under a lock on the project that
    lasts until the transaction ends, so that two transactions that each count and then
    add a job take turns: the second counts the first one's job.

    PostgreSQL: a row lock, FOR NO KEY UPDATE (rows that reference the project can still
    be inserted meanwhile). SQLite has no row locks: a write that changes nothing takes the
    database's write lock instead.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Project)
            .where(Project.id == project_id)
            .values(name=Project.name)
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            select(Project.id).where(Project.id == project_id).with_for_update(key_share=True)
        )
    count = session.scalar(
        select(func.count(Job.id)).where(Job.project_id == project_id, Job.state.in_(ACTIVE))
    )
    return int(count or 0)


def claim(session: Session, job_id: str, owner: str, lease_seconds: float) -> bool:
    """Take the job for `owner` if it is queued, or running under an expired lease."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempts < Job.max_attempts,
            or_(
                Job.state == JobState.queued.value,
                and_(Job.state == JobState.running.value, Job.lease_expires_at < now),
            ),
        )
        .values(
            state=JobState.running.value,
            attempts=Job.attempts + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def _held(job_id: str, owner: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.lease_owner == owner, Job.state == JobState.running.value)


def renew_lease(session: Session, job_id: str, owner: str, lease_seconds: float) -> bool:
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(_held(job_id, owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def report_progress(
    session: Session,
    job_id: str,
    owner: str,
    fraction: float,
    message: str,
    lease_seconds: float,
) -> bool:
    """Write progress (and renew the lease); False when this owner no longer holds the job."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(_held(job_id, owner))
        .values(
            progress=min(max(fraction, 0.0), 1.0),
            progress_message=message[:2000],
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(
    session: Session,
    job_id: str,
    owner: str,
    *,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    artifacts: list[dict[str, Any]] | None = None,
) -> bool:
    """Move a held job to a final state; False when the lease was lost meanwhile."""
    now = utcnow()
    values: dict[str, Any] = dict(
        state=state.value,
        error=error,
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
    )
    if state is JobState.succeeded:
        values.update(progress=1.0, progress_message="done")
    if result is not None:
        values["result"] = result
    if artifacts is not None:
        values["artifacts"] = artifacts
    res = session.execute(
        update(Job)
        .where(_held(job_id, owner))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def cancel(session: Session, job: Job) -> bool:
    """Cancel a queued or running job; a running worker notices at its next progress write."""
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state.in_(ACTIVE))
        .values(
            state=JobState.cancelled.value,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            progress_message="cancelled",
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(job)
    return res.rowcount == 1  # type: ignore[attr-defined]


def fail_exhausted(session: Session, job_id: str) -> bool:
    """Fail a job whose worker was lost on every one of its attempts."""
    now = utcnow()
    job = session.get(Job, job_id)
    if job is None:
        return False
    error = (
        f"the worker running this job was lost {job.attempts} time(s) "
        f"(max_attempts={job.max_attempts}); giving up. Check the worker logs for "
        "out-of-memory kills or crashes."
    )
    res = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state == JobState.running.value,
            Job.attempts >= Job.max_attempts,
            Job.lease_expires_at < now,
        )
        .values(
            state=JobState.failed.value,
            error=error,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def mark_enqueued(session: Session, job_id: str, when: datetime | None = None) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(enqueued_at=when or utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()


# The API commits a job and then sends its message; a job still unsent this long after its
# creation had its send fail (or its API process die in between).
UNSENT_GRACE_SECONDS = 30.0


def stranded_jobs(
    session: Session, requeue_queued_after: float, messages_lost_before: datetime | None = None
) -> tuple[list[Job], list[Job]]:
    """(jobs to send again, jobs to fail): expired leases, queued jobs never sent, and
    queued jobs nobody took.

    A job whose lease expired is sent again once (not on every sweep): when it was last
    enqueued before its lease ran out. Should that message be lost as well (or taken by a
    worker that died before claiming it), the job is sent again once its last message is
    `requeue_queued_after` seconds old, like a queued job nobody took. Every message sent
    before `messages_lost_before` (the broker lost its data then) counts as lost at once.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=requeue_queued_after)
    if messages_lost_before is not None:
        stale_before = max(stale_before, messages_lost_before)
    expired = session.scalars(
        select(Job).where(Job.state == JobState.running.value, Job.lease_expires_at < now)
    ).all()
    to_fail = [j for j in expired if j.attempts >= j.max_attempts]
    resend = [
        j
        for j in expired
        if j.attempts < j.max_attempts
        and (
            j.enqueued_at is None
            or j.lease_expires_at is None
            or j.enqueued_at < j.lease_expires_at
            or j.enqueued_at < stale_before
        )
    ]
    # A queued job never sent (the broker was down when it was created) goes as soon as
    # its creator has surely given up on sending it, not after `requeue_queued_after`.
    unsent_before = now - timedelta(seconds=min(UNSENT_GRACE_SECONDS, requeue_queued_after))
    resend += session.scalars(
        select(Job).where(
            Job.state == JobState.queued.value,
            or_(
                (Job.enqueued_at.is_(None)) & (Job.created_at < unsent_before),
                (Job.enqueued_at < stale_before) & (Job.created_at < stale_before),
            ),
        )
    ).all()
    return resend, to_fail
