"""Prometheus metrics at `GET /metrics`.

- `skillmix_http_request_duration_seconds{method,route,status}`: request latency histogram,
  by route template (`/v1/jobs/{job_id}`), never the raw path.
- `skillmix_jobs{state,kind}`: jobs in the database.
- `skillmix_queue_depth{queue}`: messages waiting in the broker, per Celery queue.
- `skillmix_training_tokens_per_second{verification,arm,size,seed}`: each running training
  run's recent throughput, as its verification job records it.
- `skillmix_training_last_run_tokens_per_second{size}`: the last finished run of each model
  size: its tokens over its training seconds (evaluations included).
- `skillmix_metrics_source_up{source}`: 0 when the database or the broker did not answer this
  scrape (its series are then left out rather than failing the scrape).

The API runs as several uvicorn processes and the workers are processes of their own, so
everything but the request histogram is read at scrape time from the database and the
broker, which they all share. The histogram is per process: with `PROMETHEUS_MULTIPROC_DIR`
set, prometheus_client keeps it in files there and /metrics adds up every process's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from fastapi import APIRouter, Request, Response
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import and_, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import SettingsDep
from service.db import get_sessionmaker
from service.models import Job, JobState, Verification, VerificationRun
from service.queues import JOB_KINDS, QUEUES
from service.settings import Settings

log = logging.getLogger("skillmix.metrics")

REQUEST_SECONDS = Histogram(
    "skillmix_http_request_duration_seconds",
    "HTTP request latency, by method, route template and status.",
    ["method", "route", "status"],
)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetrics:
    """Time every HTTP request into REQUEST_SECONDS (ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router puts the matched route in the scope; an unknown path has none.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUEST_SECONDS.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )


def gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def database_metrics() -> list[Metric]:
    with get_sessionmaker()() as session:
        counts: dict[tuple[str, ...], float] = {
            (s.value, k): 0 for s in JobState for k in JOB_KINDS
        }
        for state, kind, n in session.execute(
            select(Job.state, Job.kind, func.count()).group_by(Job.state, Job.kind)
        ):
            counts[(state, kind)] = n
        running = session.execute(
            select(
                VerificationRun.verification_id,
                VerificationRun.arm,
                VerificationRun.size,
                VerificationRun.seed,
                VerificationRun.summary,
            )
            .join(Verification, Verification.id == VerificationRun.verification_id)
            .join(Job, Job.id == Verification.job_id)
            .where(VerificationRun.state == "running", Job.state == JobState.running.value)
        )
        live: dict[tuple[str, ...], float] = {
            (ver, arm, size, str(seed)): float(summary["tokens_per_second"])
            for ver, arm, size, seed, summary in running
            if (summary or {}).get("tokens_per_second") is not None
        }
        last_done = (
            select(VerificationRun.size, func.max(VerificationRun.updated_at).label("at"))
            .where(VerificationRun.state == "done")
            .group_by(VerificationRun.size)
            .subquery()
        )
        finished = session.execute(
            select(VerificationRun.size, VerificationRun.summary).join(
                last_done,
                and_(
                    VerificationRun.size == last_done.c.size,
                    VerificationRun.updated_at == last_done.c.at,
                ),
            )
        )
        last = {(size,): run_throughput(summary) for size, summary in finished}
    return [
        gauge("skillmix_jobs", "Jobs by state and kind.", ["state", "kind"], counts),
        gauge(
            "skillmix_training_tokens_per_second",
            "Recent training throughput of each running verification run.",
            ["verification", "arm", "size", "seed"],
            live,
        ),
        gauge(
            "skillmix_training_last_run_tokens_per_second",
            "Training tokens per second of the last finished run of each model size.",
            ["size"],
            {k: v for k, v in last.items() if v is not None},
        ),
    ]


def run_throughput(summary: dict[str, Any] | None) -> float | None:
    tokens, seconds = (summary or {}).get("tokens"), (summary or {}).get("seconds")
    return tokens / seconds if tokens and seconds else None


def redis_keys(queue: str) -> list[str]:
    """kombu's Redis transport keeps a queue as one list per priority step: `queue` itself
    for priority 0, `queue` + separator + step for the others."""
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


def queue_depths(settings: Settings) -> dict[str, int]:
    if settings.embedded_broker:
        # kombu's filesystem transport: one `<time>_<uuid>.<queue>.msg` file per message.
        folder = settings.broker_folder / "queue"
        names = os.listdir(folder) if folder.is_dir() else []
        suffixes = [name.partition(".")[2] for name in names]
        return {queue: suffixes.count(f"{queue}.msg") for queue in QUEUES}
    client = redis.Redis.from_url(
        settings.effective_broker_url, socket_timeout=2, socket_connect_timeout=2
    )
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for key in redis_keys(queue):
                pipe.llen(key)
        sizes = iter(pipe.execute())
        return {queue: sum(next(sizes) for _ in PRIORITY_STEPS) for queue in QUEUES}
    finally:
        client.close()


class StateCollector:
    """Series read at scrape time from the database and the broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        up: dict[tuple[str, ...], float] = {}
        try:
            yield from database_metrics()
            up[("database",)] = 1
        except Exception as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            up[("database",)] = 0
        try:
            depths = queue_depths(self.settings)
            yield gauge(
                "skillmix_queue_depth",
                "Messages waiting in the broker, per Celery queue.",
                ["queue"],
                {(queue,): n for queue, n in depths.items()},
            )
            up[("broker",)] = 1
        except Exception as exc:
            log.warning("metrics: the broker did not answer: %s", exc)
            up[("broker",)] = 0
        yield gauge(
            "skillmix_metrics_source_up",
            "1 if the source answered this scrape.",
            ["source"],
            up,
        )


def render(settings: Settings, accept: str = "") -> tuple[bytes, str]:
    """The exposition and its content type, in the format the scraper's Accept header asks
    for (Prometheus text 0.0.4 by default, or OpenMetrics)."""
    registry = CollectorRegistry()
    if settings.prometheus_multiproc_dir:
        MultiProcessCollector(registry, path=str(settings.prometheus_multiproc_dir))
    else:
        registry.register(REGISTRY)  # a registry is a collector too: the default series
    registry.register(StateCollector(settings))
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep) -> Response:
    body, content_type = render(settings, request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})
