"""A verification's training as units of work: one `TrainingRun` per (arm, size, seed
group), each sent on its own to the verification job's queue, so that any number of
training workers on any number of machines share one verification.

The verification job's life, in the job states that exist (service/store/jobs.py):

1. Its first attempt (a worker's claim, as any job's) plans the units (`plan`), hands the
   job over to them (`detach`: the job stays `running`, with no lease: no worker holds
   it, and the sweeper leaves it alone, since it looks only at expired leases), and then
   sends them (`send`). Its attempt ends there: no worker blocks on a verification.
2. Each unit is claimed, leased, renewed, fenced and sent again by the sweeper with the
   same functions as a job (`jobs.claim(..., table=TrainingRun)` and the others). While a
   unit trains it writes the job's progress too (`sync_progress`), fenced on the job being
   still detached.
3. The worker whose unit ends last takes the job back (`take_finish`: one conditional
   UPDATE, so exactly one worker does, however many end at once) and finishes it in the
   job's handler (report, verdicts, plots), under a job lease like any attempt. Should it
   die there, the job's lease runs out and the sweeper sends it again, as any job.
   A unit that fails fails the job and cancels the others (`fail_job`); a cancelled job
   cancels its units (`jobs.cancel`).

The sweeper settles what a lost worker left between two steps (`settle_detached`): a
detached job whose units have all ended is sent again (or failed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session

from service.celery_app import enqueue_run
from service.models import Job, JobState, TrainingRun, VerificationRun, utcnow
from service.store import jobs

log = logging.getLogger("skillmix.training_runs")

ACTIVE = jobs.ACTIVE
LOST = (JobState.failed.value, JobState.cancelled.value)

Group = tuple[str, str, list[int]]
"""(arm, size, seeds): what one unit trains."""


def units_of(session: Session, job_id: str) -> list[TrainingRun]:
    """The job's units, in the order they were planned (fresh states)."""
    return list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.job_id == job_id)
            .order_by(TrainingRun.look, TrainingRun.created_at, TrainingRun.id)
            .execution_options(populate_existing=True)
        )
    )


def plan(
    session: Session,
    job: Job,
    verification_id: str,
    groups: Sequence[Group],
    *,
    look: int = 0,
    max_attempts: int,
) -> list[TrainingRun]:
    """Add the units of `groups` not planned yet, and queue again those that failed or were
    cancelled (a retried job: they resume from their checkpoints); each seed's
    VerificationRun row names its unit. Returns the queued units, to be sent. Commits."""
    have = {(u.arm, u.size, tuple(u.seeds)): u for u in units_of(session, job.id) if u.look == look}
    for arm, size, seeds in groups:
        if (arm, size, tuple(seeds)) in have:
            continue
        unit = TrainingRun(
            job_id=job.id,
            verification_id=verification_id,
            look=look,
            arm=arm,
            size=size,
            seeds=list(seeds),
            queue=job.queue,
            max_attempts=max_attempts,
            state=JobState.queued.value,
            created_at=utcnow(),
        )
        session.add(unit)
        session.flush()
        session.execute(
            update(VerificationRun)
            .where(
                VerificationRun.verification_id == verification_id,
                VerificationRun.arm == arm,
                VerificationRun.size == size,
                VerificationRun.seed.in_(list(seeds)),
            )
            .values(training_run_id=unit.id)
            .execution_options(synchronize_session=False)
        )
    now = utcnow()
    session.execute(
        update(TrainingRun)
        .where(TrainingRun.job_id == job.id, TrainingRun.state.in_(LOST))
        .values(
            state=JobState.queued.value,
            attempts=0,
            error=None,
            progress_message="queued again",
            enqueued_at=None,
            finished_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return [u for u in units_of(session, job.id) if u.state == JobState.queued.value]


def detach(session: Session, job_id: str, owner: str, message: str) -> bool:
    """Hand the job held by `owner` over to its units: it stays `running` with no lease (no
    worker holds it; its units do the work). False if `owner` no longer held it. Commits."""
    res = session.execute(
        update(Job)
        .where(jobs._held(job_id, owner))
        .values(lease_owner=None, lease_expires_at=None, progress_message=message[:2000])
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def send(session: Session, units: Sequence[TrainingRun]) -> int:
    """Send queued units to their queue; one the broker refused stays queued and unsent,
    for the sweeper. How many were sent."""
    targets = [(u.id, u.queue) for u in units]
    sent = 0
    for unit_id, queue in targets:
        try:
            enqueue_run(unit_id, queue)
        except Exception:
            log.warning("could not send training run %s; the sweeper will", unit_id, exc_info=True)
            continue
        jobs.mark_enqueued(session, unit_id, table=TrainingRun)
        sent += 1
    return sent


def _detached(job_id: str) -> Any:
    return and_(
        Job.id == job_id,
        Job.state == JobState.running.value,
        Job.lease_owner.is_(None),
        Job.lease_expires_at.is_(None),
    )


def _open_units(job_id: str) -> Any:
    """The job has a unit that has not succeeded."""
    return exists().where(
        TrainingRun.job_id == job_id, TrainingRun.state != JobState.succeeded.value
    )


def sync_progress(session: Session, job_id: str, message: str) -> None:
    """The detached job's progress: the mean of its units' (each the mean of its seeds');
    the jobs waiting for it (a study) are told it too (`jobs.note_need_progress`)."""
    mean = session.scalar(
        select(func.coalesce(func.avg(TrainingRun.progress), 0.0)).where(
            TrainingRun.job_id == job_id
        )
    )
    res = session.execute(
        update(Job)
        .where(_detached(job_id))
        .values(progress=mean, progress_message=message[:2000], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if res.rowcount == 1:  # type: ignore[attr-defined]
        jobs.note_need_progress(session, job_id, float(mean or 0.0))


def report_progress(
    session: Session,
    unit_id: str,
    job_id: str,
    owner: str,
    fraction: float,
    message: str,
    lease_seconds: float,
) -> bool:
    """The unit's progress (renewing its lease) and its job's; False when `owner` no longer
    holds the unit (cancelled, or taken by another attempt). Commits."""
    held = jobs.report_progress(
        session, unit_id, owner, fraction, message, lease_seconds, table=TrainingRun
    )
    if held:
        sync_progress(session, job_id, message)
        session.commit()
    return held


def take_finish(session: Session, job_id: str, owner: str, lease_seconds: float) -> bool:
    """Take the detached job for `owner` once every unit has succeeded: one conditional
    UPDATE, so of the workers whose units end together exactly one gets it. Commits."""
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(_detached(job_id), ~_open_units(job_id))
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            progress_message="writing the report",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def fail_job(session: Session, unit: TrainingRun, error: str) -> bool:
    """A unit failed (or its worker was lost too often): fail its detached job, naming the
    unit, and cancel the job's other units. Commits. False if the job had ended already."""
    now = utcnow()
    seeds = ",".join(map(str, unit.seeds))
    res = session.execute(
        update(Job)
        .where(_detached(unit.job_id))
        .values(
            state=JobState.failed.value,
            error=f"training run {unit.arm}/{unit.size}/seeds {seeds} ({unit.id}) failed: {error}",
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(TrainingRun)
        .where(TrainingRun.job_id == unit.job_id, TrainingRun.state.in_(ACTIVE))
        .values(
            state=JobState.cancelled.value,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            progress_message=f"cancelled: training run {unit.id} failed",
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return res.rowcount == 1  # type: ignore[attr-defined]


def stranded(
    session: Session, requeue_queued_after: float, messages_lost_before: Any = None
) -> tuple[list[TrainingRun], list[TrainingRun]]:
    """(units to send again, units to fail), by the rules of `jobs.stranded`."""
    return jobs.stranded(session, TrainingRun, requeue_queued_after, messages_lost_before)


def fail_exhausted(session: Session, unit: TrainingRun) -> bool:
    """A unit whose worker was lost on each of its attempts fails, and its job with it."""
    if not jobs.fail_exhausted(session, unit.id, table=TrainingRun):
        return False
    session.refresh(unit)
    fail_job(session, unit, unit.error or "its worker was lost")
    return True


def settle_detached(session: Session) -> list[Job]:
    """Detached jobs whose units have all ended, which the worker of the last one did not
    get to finish (it died in between): a job with a failed unit fails; one whose units
    all succeeded is queued again, to be sent (its handler then writes the report).
    Commits."""
    detached = session.scalars(
        select(Job)
        .where(
            Job.state == JobState.running.value,
            Job.lease_owner.is_(None),
            exists().where(TrainingRun.job_id == Job.id),
            ~exists().where(TrainingRun.job_id == Job.id, TrainingRun.state.in_(ACTIVE)),
        )
        .execution_options(populate_existing=True)
    ).all()
    ready = []
    for job in detached:
        lost = [u for u in units_of(session, job.id) if u.state in LOST]
        if lost:
            fail_job(session, lost[0], lost[0].error or lost[0].state)
            continue
        now = utcnow()
        res = session.execute(
            update(Job)
            .where(_detached(job.id), ~_open_units(job.id))
            .values(
                state=JobState.queued.value,
                progress_message="writing the report",
                enqueued_at=None,
                updated_at=now,
            )  # fmt: skip
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            ready.append(job)
    session.commit()
    return ready
