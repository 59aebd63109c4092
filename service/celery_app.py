"""The Celery app. Queues: `curation` (scans, mixtures; CPU) and `training` (GPU).

Broker: Redis when `SKILLMIX_BROKER_URL` is set; otherwise kombu's `filesystem://`
transport under `SKILLMIX_DATA_DIR/broker`, which needs no server, so the embedded
default runs on a machine with nothing but Python. The database, not a result
backend, records job state, so results are ignored.
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup
from kombu import Queue

from service import broker_fs  # noqa: F401  (filesystem:// that never delivers half a message)
from service.models import utcnow
from service.queues import QUEUES
from service.settings import Settings, get_settings

TASK_NAME = "skillmix.run_job"
RUN_TASK_NAME = "skillmix.run_training"
"""The task of one training unit of a verification (service.models.TrainingRun)."""


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
    # kombu looks for such messages every `interval * throttle` seconds (100 by default):
    # look as often as the timeout asks for, every 1 to 10 seconds.
    timeout = settings.visibility_timeout_seconds
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": min(max(timeout / 2, 1.0), 10.0),
        "unacked_restore_throttle": 1,
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("skillmix", broker=settings.effective_broker_url, include=["service.worker.tasks"])
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
        # Celery's default for 6.0 terminates running tasks when the broker connection
        # drops, since their messages will be delivered again. Here the database lease
        # already keeps a redelivered copy from running beside the live task, so a broker
        # restart must not throw away the work under way (tests/reliability).
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


@celeryd_after_setup.connect(weak=False, dispatch_uid="skillmix-keep-tasks-on-connection-loss")
def _keep_tasks_quietly(**_: object) -> None:
    # Celery warns at every connection loss that it will cancel tasks by default one day;
    # we chose not to (above). After the worker's logging setup, which shows every warning.
    warnings.filterwarnings(
        "ignore", r"\s*In Celery 5\.1 we introduced", CPendingDeprecationWarning
    )


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def enqueue(job_id: str, queue: str) -> None:
    _mark_epoch(get_settings())
    get_celery().send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue)


def enqueue_run(run_id: str, queue: str) -> None:
    """Send one training unit (a TrainingRun's id) to `queue`."""
    _mark_epoch(get_settings())
    get_celery().send_task(RUN_TASK_NAME, args=[run_id], queue=queue, routing_key=queue)


EPOCH_KEY = "skillmix:broker-epoch"


@lru_cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)


def broker_epoch(settings: Settings | None = None) -> datetime | None:
    """Since when the broker has held its messages (None: not a Redis broker).

    The first sender into an empty Redis writes the time into a marker key. A Redis that
    restarted without its data, or was flushed, lost the marker with the messages; the
    next send or sweep writes a new one, and every message sent before that time may be
    gone: the sweeper sends those jobs again from the database.
    """
    client = _mark_epoch(settings or get_settings())
    marker = client.get(EPOCH_KEY) if client else None
    return datetime.fromisoformat(marker.decode()) if isinstance(marker, bytes) else None


def _mark_epoch(settings: Settings) -> redis.Redis | None:
    """Write the epoch marker if the broker has none (one round trip); None if the broker
    is not Redis. Senders only need the marker to exist; the sweeper reads it."""
    url = settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = _redis(url)
    client.set(EPOCH_KEY, utcnow().isoformat(), nx=True)
    return client


def __getattr__(name: str) -> Celery:
    # `celery -A service.celery_app worker` looks up `app`; build it on first use so that
    # importing this module never reads settings early.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(name)
