"""Celery tasks: thin. They take a job id and hand it to the runner."""

from __future__ import annotations

from celery import shared_task

from service import runner
from service.celery_app import TASK_NAME


@shared_task(name=TASK_NAME)
def run_job(job_id: str) -> str:
    return runner.execute(job_id)
