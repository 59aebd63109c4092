"""Celery tasks: thin. They take a job id (or a training unit's) and hand it to the runner."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task, shared_task

from service.celery_app import RUN_TASK_NAME, TASK_NAME
from service.worker import runner

log = logging.getLogger("skillmix.tasks")

CLAIM_RETRIES = 12
"""Tries again of a task that could not reach the database to claim its job, after 1, 2, 4,
8, 16 and then every 30 seconds: about four minutes in all. After that the message is
consumed, and the sweeper sends the job again (SKILLMIX_REQUEUE_QUEUED_AFTER_SECONDS)."""
CLAIM_RETRY_CAP_SECONDS = 30


def claim_retry_delay(retries: int) -> int:
    """Seconds before try number `retries + 2` of the claim: 1, 2, 4 ... capped at 30."""
    return int(min(2**retries, CLAIM_RETRY_CAP_SECONDS))


@shared_task(name=TASK_NAME, bind=True)
def run_job(self: Task, job_id: str) -> str:
    return _claiming(self, runner.execute, job_id)


@shared_task(name=RUN_TASK_NAME, bind=True)
def run_training(self: Task, run_id: str) -> str:
    """One training unit of a verification (service.models.TrainingRun)."""
    return _claiming(self, runner.execute_unit, run_id)


def _claiming(task: Task, execute: Callable[[str], str], work_id: str) -> str:
    try:
        return execute(work_id)
    except runner.ClaimUnavailable as exc:
        # Nothing was claimed: send the message again for later instead of consuming it
        # (a 16 s outage would otherwise leave the work queued until the sweeper's re-queue).
        retries = task.request.retries
        if retries >= CLAIM_RETRIES:
            log.error("%s; giving up after %d tries, the sweeper will send it again", exc, retries)
            raise
        delay = claim_retry_delay(retries)
        log.warning("%s; try %d of %d in %ds", exc, retries + 2, CLAIM_RETRIES + 1, delay)
        raise task.retry(exc=exc, countdown=delay, max_retries=CLAIM_RETRIES) from exc
