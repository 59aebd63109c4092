"""Job records: the state machine `queued -> running -> succeeded | failed | cancelled`.

Every transition is one conditional UPDATE, so two processes can never both move a job:
a worker *claims* a job by taking its lease, and only the lease holder may write progress
or a result. A lease that runs out means the worker was lost; the job is then claimed
again (by a redelivered message or by the sweeper) until `max_attempts` is reached.

The lease functions (`claim`, `renew_lease`, `report_progress`, `finish`,
`fail_exhausted`, `mark_enqueued`, `stranded`) take `table=`: `Job`, or `TrainingRun`
for the units of a verification's training (service/store/training_runs.py), which follow
the same rules with leases of their own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from service.celery_app import enqueue
from service.models import (
    Job,
    JobDependency,
    JobState,
    Mixture,
    Project,
    Scan,
    TrainingRun,
    Verification,
    utcnow,
)
from service.problems import Problem, not_found, too_many_requests
from service.queues import KIND_QUEUES

log = logging.getLogger("skillmix.jobs")

ACTIVE = (JobState.queued.value, JobState.running.value)

# Retry-After for a create refused by the cap on active jobs: a guess, as jobs take seconds
# to hours; short enough that a client's few retries can catch a short job finishing.
ACTIVE_JOBS_RETRY_AFTER_SECONDS = 10

AfterCommit = Callable[[], None]
"""What a create does once its transaction committed (send the job to the broker)."""

Leased = type[Job] | type[TrainingRun]
"""A table of leased work: jobs, or the training units of verifications."""
L = TypeVar("L", Job, TrainingRun)


def query(project_id: str) -> Select[Job]:
    return select(Job).where(Job.project_id == project_id)


def get_job(session: Session, project_id: str, job_id: str) -> Job:
    """The project's job; 404 for a missing job or another project's."""
    job = session.get(Job, job_id)
    if job is None or job.project_id != project_id:
        raise not_found("Job", job_id)
    return job


def start_job(
    session: Session,
    *,
    project_id: str,
    kind: str,
    params: dict[str, Any],
    max_attempts: int,
    max_active: int,
    queue: str | None = None,
    after: Sequence[Job] = (),
) -> tuple[Job, AfterCommit]:
    """Add a queued job row; return it and the hook that sends it once committed.
    429 (and nothing added) when the project already has `max_active` active jobs.

    A job `after` other jobs that have not succeeded yet waits, queued and unsent, until
    they have (`release_dependents`); it is failed if one of them fails."""
    ensure_room(session, project_id, max_active)
    job = create_job(
        session,
        project_id=project_id,
        kind=kind,
        queue=queue or KIND_QUEUES[kind],
        params=params,
        max_attempts=max_attempts,
    )
    pending = [need for need in after if need.state != JobState.succeeded.value]
    for need in pending:
        session.add(JobDependency(job_id=job.id, needs_job_id=need.id))
    if pending:
        job.progress_message = "waiting for " + ", ".join(
            f"{need.kind} job {need.id}" for need in pending
        )
    session.flush()
    session.refresh(job)
    if pending:
        return job, lambda: None

    def send() -> None:
        submit(session, job.id, job.queue)

    return job, send


def wait_again(
    session: Session, job_id: str, owner: str, needs: Sequence[Job], message: str
) -> bool:
    """Put the job held by `owner` back to waiting for `needs` (jobs not yet succeeded: a
    study's next look), queued and unsent, as `start_job(after=...)` makes a new job wait;
    `release_dependents` sends it again once they have all succeeded, and it fails if one
    fails. Its attempts start again from 0: each wait begins a new step of its work. False
    (and nothing changed) if `owner` no longer held it. Does not commit: the caller commits
    it with the jobs it now waits for."""
    assert needs and all(need.state != JobState.succeeded.value for need in needs), needs
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(_held(job_id, owner))
        .values(
            state=JobState.queued.value,
            attempts=0,
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=None,
            started_at=None,
            progress_message=message[:2000],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for need in needs:
        session.add(JobDependency(job_id=job_id, needs_job_id=need.id))
    session.flush()
    return True


def ensure_room(session: Session, project_id: str, cap: int) -> None:
    """Refuse a new job when the project has `cap` queued or running ones (0: no cap). The
    count locks the project until the transaction that adds the job ends."""
    if cap <= 0:
        return
    active = count_active_locked(session, project_id)
    if active >= cap:
        raise too_many_requests(
            "too-many-active-jobs",
            "Too many active jobs",
            f"This project has {active} queued or running jobs and may have at most {cap} "
            "at once (SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT); retry when one has finished, "
            "or cancel one.",
            ACTIVE_JOBS_RETRY_AFTER_SECONDS,
            active_jobs=active,
            max_active_jobs=cap,
        )


def submit(session: Session, job_id: str, queue: str) -> bool:
    """Hand a committed job to the broker. If the broker is down the job stays queued and
    the sweeper sends it later (so a create still succeeds): False then."""
    try:
        enqueue(job_id, queue)
    except Exception:
        log.warning("could not enqueue job %s; the sweeper will retry", job_id, exc_info=True)
        return False
    mark_enqueued(session, job_id)
    return True


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


def claim(
    session: Session, job_id: str, owner: str, lease_seconds: float, table: Leased = Job
) -> bool:
    """Take the job (or unit) for `owner` if it is queued, or running under an expired
    lease."""
    now = utcnow()
    result = session.execute(
        update(table)
        .where(
            table.id == job_id,
            table.attempts < table.max_attempts,
            or_(
                table.state == JobState.queued.value,
                and_(table.state == JobState.running.value, table.lease_expires_at < now),
            ),
        )
        .values(
            state=JobState.running.value,
            attempts=table.attempts + 1,
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


def _held(job_id: str, owner: str, table: Leased = Job) -> ColumnElement[bool]:
    return and_(
        table.id == job_id, table.lease_owner == owner, table.state == JobState.running.value
    )


def renew_lease(
    session: Session, job_id: str, owner: str, lease_seconds: float, table: Leased = Job
) -> bool:
    now = utcnow()
    result = session.execute(
        update(table)
        .where(_held(job_id, owner, table))
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
    table: Leased = Job,
) -> bool:
    """Write progress (and renew the lease); False when this owner no longer holds the job."""
    now = utcnow()
    result = session.execute(
        update(table)
        .where(_held(job_id, owner, table))
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


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (an ED that is never reached, a NaN mean) as
    None: JSON has no Infinity or NaN, and PostgreSQL refuses a document holding one, which
    would fail the final write of a job whose work succeeded."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def finish(
    session: Session,
    job_id: str,
    owner: str,
    *,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    artifacts: list[dict[str, Any]] | None = None,
    table: Leased = Job,
) -> bool:
    """Move a held job (or unit) to a final state; False when the lease was lost meanwhile.
    Commits."""
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
        values["result"] = json_safe(result)
    if artifacts is not None:
        values["artifacts"] = artifacts
    res = session.execute(
        update(table)
        .where(_held(job_id, owner, table))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def cancel(session: Session, job: Job) -> bool:
    """Cancel a queued or running job and its training units; a running worker notices at
    its next progress write (a unit stops at its next step and keeps its checkpoint), a
    queued unit never starts. Jobs waiting for this one fail; its children
    (`Job.parent_id`: a study's mixtures and verification) are cancelled with it, after it
    (so it ends cancelled, not failed for a lost child)."""
    now = utcnow()
    cancelled: dict[str, Any] = dict(
        state=JobState.cancelled.value,
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
        progress_message="cancelled",
    )
    res = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state.in_(ACTIVE))
        .values(**cancelled)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(TrainingRun)
        .where(TrainingRun.job_id == job.id, TrainingRun.state.in_(ACTIVE))
        .values(**cancelled)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    children = session.scalars(
        select(Job).where(Job.parent_id == job.id, Job.state.in_(ACTIVE))
    ).all()
    # Dependents first (the verification before the mixtures it waits for): cancelling a
    # needed job first would fail its dependents for a lost need instead.
    for child in sorted(children, key=lambda c: not needs_of(session, c.id)):
        cancel(session, child)
    settle_waiting(session, needed_by=job.id)
    session.refresh(job)
    return res.rowcount == 1  # type: ignore[attr-defined]


def fail_exhausted(session: Session, job_id: str, table: Leased = Job) -> bool:
    """Fail a job (or unit) whose worker was lost on every one of its attempts."""
    now = utcnow()
    job = cast("Job | TrainingRun | None", session.get(table, job_id))
    if job is None:
        return False
    what = "job" if table is Job else "training run"
    error = (
        f"the worker running this {what} was lost {job.attempts} time(s) "
        f"(max_attempts={job.max_attempts}); giving up. Check the worker logs for "
        "out-of-memory kills or crashes."
    )
    res = session.execute(
        update(table)
        .where(
            table.id == job_id,
            table.state == JobState.running.value,
            table.attempts >= table.max_attempts,
            table.lease_expires_at < now,
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


def mark_enqueued(
    session: Session, job_id: str, when: datetime | None = None, table: Leased = Job
) -> None:
    session.execute(
        update(table)
        .where(table.id == job_id)
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
    """(jobs to send again, jobs to fail): see `stranded`. A job waiting for others is not
    sent (`waiting`)."""
    return stranded(session, Job, requeue_queued_after, messages_lost_before, ~waiting())


def stranded(
    session: Session,
    table: type[L],
    requeue_queued_after: float,
    messages_lost_before: datetime | None = None,
    sendable: ColumnElement[bool] | None = None,
) -> tuple[list[L], list[L]]:
    """(rows to send again, rows to fail): expired leases, queued rows never sent, and
    queued rows nobody took (queued rows only where `sendable`, if given).

    A row whose lease expired is sent again once (not on every sweep): when it was last
    enqueued before its lease ran out. Should that message be lost as well (or taken by a
    worker that died before claiming it), the row is sent again once its last message is
    `requeue_queued_after` seconds old, like a queued row nobody took. Every message sent
    before `messages_lost_before` (the broker lost its data then) counts as lost at once.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=requeue_queued_after)
    if messages_lost_before is not None:
        stale_before = max(stale_before, messages_lost_before)
    expired = session.scalars(
        select(table).where(table.state == JobState.running.value, table.lease_expires_at < now)
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
    # A queued row never sent (the broker was down when it was created) goes as soon as
    # its creator has surely given up on sending it, not after `requeue_queued_after`.
    unsent_before = now - timedelta(seconds=min(UNSENT_GRACE_SECONDS, requeue_queued_after))
    queued = select(table).where(
        table.state == JobState.queued.value,
        or_(
            (table.enqueued_at.is_(None)) & (table.created_at < unsent_before),
            (table.enqueued_at < stale_before) & (table.created_at < stale_before),
        ),
    )
    if sendable is not None:
        queued = queued.where(sendable)
    resend += session.scalars(queued).all()
    return resend, list(to_fail)


def waiting() -> ColumnElement[bool]:
    """The job needs another job that has not succeeded (yet): it must not be sent."""
    need = aliased(Job)
    return exists().where(
        JobDependency.job_id == Job.id,
        JobDependency.needs_job_id == need.id,
        need.state != JobState.succeeded.value,
    )


NEED_PROGRESS = " · "
"""Separates a waiting job's own message from how far the job it waits for has got."""


def note_need_progress(session: Session, need_id: str, fraction: float) -> None:
    """Tell the jobs waiting for job `need_id` how far it has got (a study waiting for its
    look's verification, which trains for many minutes): their own message (which names
    the jobs they wait for), then the job's kind and percentage. Their progress fraction
    stays their own. Does not commit."""
    waiting = session.scalars(
        select(Job).where(
            Job.state == JobState.queued.value,
            Job.enqueued_at.is_(None),
            Job.id.in_(select(JobDependency.job_id).where(JobDependency.needs_job_id == need_id)),
        )
    ).all()
    if not waiting:
        return
    kind = session.scalar(select(Job.kind).where(Job.id == need_id))
    note = f"{NEED_PROGRESS}{kind} at {fraction:.0%}"
    for job in waiting:
        own = (job.progress_message or "").split(NEED_PROGRESS)[0]
        job.progress_message = own[: 2000 - len(note)] + note
        job.updated_at = utcnow()


def needs_of(session: Session, job_id: str) -> list[Job]:
    """The jobs `job_id` waits for (succeeded or not)."""
    return list(
        session.scalars(
            select(Job)
            .join(JobDependency, JobDependency.needs_job_id == Job.id)
            .where(JobDependency.job_id == job_id)
            .order_by(Job.id)
            # Fresh states, not the session's copies (the conditional UPDATEs here do not
            # refresh them).
            .execution_options(populate_existing=True)
        )
    )


def settle_waiting(session: Session, needed_by: str | None = None) -> list[Job]:
    """Queued, unsent jobs that wait for others (only those waiting for `needed_by` when
    given): fail each that needs a job that failed or was cancelled, and return those whose
    needs have all succeeded, to be sent. Commits."""
    stmt = select(Job).where(
        Job.state == JobState.queued.value,
        Job.enqueued_at.is_(None),
        exists().where(JobDependency.job_id == Job.id),
    )
    if needed_by is not None:
        stmt = stmt.where(
            Job.id.in_(select(JobDependency.job_id).where(JobDependency.needs_job_id == needed_by))
        )
    stmt = stmt.execution_options(populate_existing=True)
    ready = []
    for job in session.scalars(stmt).all():
        needs = needs_of(session, job.id)
        lost = [
            need
            for need in needs
            if need.state in (JobState.failed.value, JobState.cancelled.value)
        ]
        if lost:
            _fail_waiting(session, job.id, lost[0])
        elif all(need.state == JobState.succeeded.value for need in needs):
            ready.append(job)
    session.commit()
    return ready


def _fail_waiting(session: Session, job_id: str, lost: Job) -> None:
    now = utcnow()
    reason = f": {lost.error}" if lost.error else ""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.queued.value)
        .values(
            state=JobState.failed.value,
            error=f"it needed {lost.kind} job {lost.id}, which {lost.state}{reason}",
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def release_dependents(session: Session, job_id: str) -> int:
    """After `job_id` reached a final state: send the jobs that were waiting only for it,
    fail those it leaves without what they need. How many were sent."""
    return sum(submit(session, job.id, job.queue) for job in settle_waiting(session, job_id))


RESOURCE_PARAMS: dict[str, type[Scan] | type[Mixture] | type[Verification]] = {
    "scan_id": Scan,
    "mixture_id": Mixture,
    "verification_id": Verification,
}
"""The job params that name the resource a job works for (a deleted one is not retried)."""


def retry(session: Session, job: Job, max_active: int) -> AfterCommit:
    """Send a failed or cancelled job again, as the same job: it runs in the same work
    directory (and a mixture into the same output), so it resumes from what the failed
    attempt completed (scan ranks, mixture shards, finished runs and checkpoints). Its
    attempts start again from 0. 409 for a job not failed or cancelled, for one whose
    resource was deleted, and for one that needs a job that failed (retry that one first).
    Returns the hook that sends it once committed (nothing while it waits for others)."""
    if job.state not in (JobState.failed.value, JobState.cancelled.value):
        raise Problem(
            409,
            "job-not-failed",
            "Job not failed",
            f"Job {job.id} is {job.state}; only a failed or cancelled job can be retried.",
            state=job.state,
        )
    for param, model in RESOURCE_PARAMS.items():
        row = session.get(model, job.params[param]) if param in job.params else None
        if row is not None and getattr(row, "deleted_at", None) is not None:
            raise Problem(
                409,
                "resource-deleted",
                "Resource deleted",
                f"Job {job.id} worked for {job.params[param]}, which was deleted (with its "
                "files); create it again instead.",
            )
    lost = [
        need
        for need in needs_of(session, job.id)
        if need.state in (JobState.failed.value, JobState.cancelled.value)
    ]
    if lost:
        raise Problem(
            409,
            "job-needs-failed",
            "A job this one needs failed",
            f"Job {job.id} needs {lost[0].kind} job {lost[0].id}, which {lost[0].state}; "
            "retry that one first.",
            needs=[need.id for need in lost],
        )
    ensure_room(session, job.project_id, max_active)
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state.in_((JobState.failed.value, JobState.cancelled.value)))
        .values(
            state=JobState.queued.value,
            attempts=0,
            error=None,
            progress=0.0,
            progress_message="retried",
            started_at=None,
            finished_at=None,
            enqueued_at=None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.flush()
    waits = session.scalar(select(Job.id).where(Job.id == job.id, waiting()))

    def send() -> None:
        if waits is None:
            submit(session, job.id, job.queue)

    return send
