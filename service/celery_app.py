"""The Celery app. Queues: `curation` (scans, mixtures; CPU) and `training` (GPU).

Broker: Redis when `SKILLMIX_BROKER_URL` is set; otherwise kombu's `filesystem://`
transport under `SKILLMIX_DATA_DIR/broker`, which needs no server, so the embedded
default runs on a machine with nothing but Python. The database, not a result
backend, records job state, so results are ignored.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Queue

from service.kinds import QUEUES
from service.settings import Settings, get_settings

TASK_NAME = "skillmix.run_job"


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.embedded_broker:
        # kombu warns that filesystem:// has no hostname; it needs none.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        folder = settings.broker_folder
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # kombu polls the folder; its 1 s default delays every job start by up to 1 s.
            "polling_interval": 0.1,
        }
    # A message a dead worker took is redelivered after this long; running tasks keep
    # their own lease in the database, so a redelivered copy of a live task does no work.
    return {"visibility_timeout": settings.visibility_timeout_seconds}


def make_celery(settings: Settings) -> Celery:
    app = Celery("skillmix", broker=settings.effective_broker_url, include=["service.tasks"])
    app.conf.update(
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue=QUEUES[0],
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Long tasks (STYLE.md): acknowledge after the work, take one message at a time,
        # and hand a message back when the process running it dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def enqueue(job_id: str, queue: str) -> None:
    get_celery().send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue)


def __getattr__(name: str) -> Celery:
    # `celery -A service.celery_app worker` looks up `app`; build it on first use so that
    # importing this module never reads settings early.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(name)
