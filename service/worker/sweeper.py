"""Finds jobs the database says are active but that no live worker holds, and sends them
again (or fails them when their attempts are used up), and forgets expired idempotency
keys. Runs in every worker process, so a lost message, a dead worker or a broker restart
never strands a job: a broker that lost its data is noticed at the next sweep (see
`celery_app.broker_epoch`) and its jobs are sent again at once."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import delete

from service.celery_app import broker_epoch, enqueue, enqueue_run
from service.db import session_scope
from service.models import IdempotencyRecord, TrainingRun, utcnow
from service.settings import Settings
from service.store import jobs, training_runs

log = logging.getLogger("skillmix.sweeper")


def sweep_once(settings: Settings) -> dict[str, int]:
    try:
        lost_before = broker_epoch(settings)
    except Exception as exc:  # the broker is down: the resends below will say so too
        log.warning("could not read the broker's epoch marker: %s", exc)
        lost_before = None
    with session_scope() as session:
        cutoff = utcnow() - timedelta(seconds=settings.idempotency_ttl_seconds)
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
        resend, to_fail = jobs.stranded_jobs(
            session, settings.requeue_queued_after_seconds, messages_lost_before=lost_before
        )
        failed = sum(jobs.fail_exhausted(session, job.id) for job in to_fail)
        targets = [(job.id, job.queue) for job in resend]
        # Jobs that waited for others whose end the runner did not get to settle.
        targets += [(job.id, job.queue) for job in jobs.settle_waiting(session)]
        # Training units of verifications, by the same rules; and verifications whose
        # units all ended without the last one's worker finishing the job.
        units, units_to_fail = training_runs.stranded(
            session, settings.requeue_queued_after_seconds, messages_lost_before=lost_before
        )
        failed += sum(training_runs.fail_exhausted(session, unit) for unit in units_to_fail)
        unit_targets = [(unit.id, unit.queue) for unit in units]
        targets += [(job.id, job.queue) for job in training_runs.settle_detached(session)]
    sent = 0
    for unit_id, queue in dict(unit_targets).items():
        try:
            enqueue_run(unit_id, queue)
        except Exception:
            log.exception("could not re-enqueue training run %s", unit_id)
            continue
        with session_scope() as session:
            jobs.mark_enqueued(session, unit_id, table=TrainingRun)
        sent += 1
        log.info("re-enqueued stranded training run %s", unit_id)
    for job_id, queue in dict(targets).items():
        try:
            enqueue(job_id, queue)
        except Exception:
            log.exception("could not re-enqueue job %s", job_id)
            continue
        with session_scope() as session:
            jobs.mark_enqueued(session, job_id)
        sent += 1
        log.info("re-enqueued stranded job %s", job_id)
    return {"resent": sent, "failed": failed}


def start_sweeper(settings: Settings) -> threading.Event:
    """Sweep every `sweep_interval_seconds` in a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                sweep_once(settings)
            except Exception:
                log.exception("sweep failed")
            if stop.wait(settings.sweep_interval_seconds):
                return

    threading.Thread(target=loop, name="skillmix-sweeper", daemon=True).start()
    return stop
