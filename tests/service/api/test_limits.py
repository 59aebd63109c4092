"""API limits: the per-key rate limit (in process, shared through Redis, open when Redis is
down) and the per-project cap on active jobs (refused before anything is stored, race-safe
on SQLite and PostgreSQL, and never in the way of an idempotent replay)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
import skillmix_client._client as sdk_client
from fastapi import FastAPI
from fastapi.testclient import TestClient
from skillmix_client import RateLimitError, Skillmix
from sqlalchemy import func, select

from service.api import ratelimit
from service.api.app import create_app
from service.api.ratelimit import LocalRateLimiter, Rate, RedisRateLimiter
from service.auth import api_key_for
from service.cli.embedded import free_port, refresh_settings, run_api
from service.db import session_scope
from service.models import IdempotencyRecord, Job, JobState, Scan
from service.settings import Settings
from tests.clients.servers import serve
from tests.service.conftest import auth, new_key

PARKED = {"queue": "training"}  # no worker consumes it here: jobs stay queued
PROBLEM = "urn:skillmix:problem:"


def configure(env: pytest.MonkeyPatch, **values: object) -> None:
    for name, value in values.items():
        env.setenv(f"SKILLMIX_{name.upper()}", str(value))
    refresh_settings()


def make_client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_id(key: str) -> str:
    with session_scope() as session:
        row = api_key_for(session, key)
        assert row is not None
        return row.id


def assert_rate_limited(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == PROBLEM + "rate-limited"
    assert "SKILLMIX_RATE_LIMIT_PER_MINUTE" in body["detail"]
    seconds = int(r.headers["retry-after"])
    assert seconds >= 1 and body["retry_after"] == seconds
    return seconds


# -- rate limit ---------------------------------------------------------------------------


def test_gcra_admits_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(Rate(per_minute=60, burst=3), clock=clock)
    assert [limiter.hit("k").allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("k").retry_after == pytest.approx(1.0)
    assert limiter.hit("other").allowed  # per key
    clock.now += 1.0
    assert limiter.hit("k").allowed and not limiter.hit("k").allowed
    clock.now += 60.0  # idle: the whole burst is back
    assert all(limiter.hit("k").allowed for _ in range(3))


def test_limiter_follows_the_settings(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path)
    assert isinstance(ratelimit.from_settings(base), LocalRateLimiter)
    assert base.effective_rate_limit_burst == base.rate_limit_per_minute // 10
    shared = ratelimit.from_settings(base.model_copy(update={"broker_url": "redis://h:1/0"}))
    assert isinstance(shared, RedisRateLimiter)
    assert ratelimit.from_settings(base.model_copy(update={"rate_limit_per_minute": 0})) is None


def test_a_key_over_its_rate_gets_429_with_retry_after(
    env: pytest.MonkeyPatch, sqlite_db: str
) -> None:
    configure(env, rate_limit_per_minute=60, rate_limit_burst=2)
    key_a, key_b = new_key("limited-a"), new_key("limited-b")
    with make_client(create_app()) as client:
        assert [client.get("/v1/jobs", headers=auth(key_a)).status_code for _ in range(2)] == [
            200,
            200,
        ]
        r = client.get("/v1/jobs", headers=auth(key_a))
        assert assert_rate_limited(r) == 1
        assert r.headers["x-request-id"]
        # Another key has its own budget; a bad key is still 401; probes are never limited.
        assert client.get("/v1/jobs", headers=auth(key_b)).status_code == 200
        assert client.get("/v1/jobs", headers=auth("sk_nope")).status_code == 401
        assert {client.get("/healthz").status_code for _ in range(5)} == {200}
        assert {client.get("/readyz").status_code for _ in range(5)} == {200}


def test_openapi_documents_429_with_retry_after(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in ("/v1/jobs", "/v1/scans", "/v1/mixtures", "/v1/verifications"):
        response = doc["paths"][path]["post"]["responses"]["429"]
        assert "application/problem+json" in response["content"]
        assert response["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert "429" not in doc["paths"]["/healthz"]["get"]["responses"]


def test_redis_shares_the_count_between_app_instances(
    env: pytest.MonkeyPatch, sqlite_db: str, redis_url: str
) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    key = new_key("shared")
    apps = [create_app(), create_app()]
    for app in apps:
        app.state.rate_limiter = RedisRateLimiter(redis_url, Rate(60, 2), prefix=prefix)
    with make_client(apps[0]) as one, make_client(apps[1]) as two:
        assert one.get("/v1/jobs", headers=auth(key)).status_code == 200
        assert two.get("/v1/jobs", headers=auth(key)).status_code == 200
        assert assert_rate_limited(one.get("/v1/jobs", headers=auth(key))) == 1
        assert_rate_limited(two.get("/v1/jobs", headers=auth(key)))
    stored = redis.Redis.from_url(redis_url)
    assert 0 < stored.pttl(prefix + key_id(key)) <= 2000  # forgotten once the bucket is full


def test_an_unreachable_redis_lets_requests_through_and_warns_once(
    env: pytest.MonkeyPatch, sqlite_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    env.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)  # try Redis on every request
    key = new_key("no-redis")
    app = create_app()
    down = f"redis://127.0.0.1:{free_port()}/0"
    app.state.rate_limiter = RedisRateLimiter(down, Rate(60, 1))
    caplog.set_level(logging.WARNING, logger="skillmix.api")
    with make_client(app) as client:
        assert {client.get("/v1/jobs", headers=auth(key)).status_code for _ in range(4)} == {200}
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1


def test_the_sdk_waits_out_retry_after(
    env: pytest.MonkeyPatch, sqlite_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock, slept = Clock(), []

    def sleep(seconds: float) -> None:  # the SDK's sleep moves the limiter's clock on
        slept.append(seconds)
        clock.now += seconds

    env.setattr(sdk_client, "time", SimpleNamespace(sleep=sleep))
    caplog.set_level(logging.DEBUG, logger="skillmix_client")
    key = new_key("sdk-429")
    app = create_app()
    app.state.rate_limiter = LocalRateLimiter(Rate(60, 1), clock=clock)
    # A real server on loopback: the SDK speaks HTTP through its own httpx client (starlette's
    # TestClient is built on another HTTP library since starlette 1.10, and is no httpx.Client).
    with serve(app) as base_url, Skillmix(base_url=base_url, api_key=key) as client:
        first = client.jobs.create(**PARKED)
        second = client.jobs.create(**PARKED)
        assert slept == [1.0] and first.id != second.id
        assert any("status=429" in r.getMessage() for r in caplog.records)
        with pytest.raises(RateLimitError) as info:
            client.with_options(max_retries=0).jobs.create(**PARKED)
    assert info.value.status_code == 429 and info.value.slug == "rate-limited"
    assert count_jobs(key) == 2


# -- cap on active jobs -------------------------------------------------------------------


def count_jobs(key: str, active_only: bool = False) -> int:
    """The jobs of the key's project (the PostgreSQL database is shared by other tests)."""
    with session_scope() as session:
        row = api_key_for(session, key)
        assert row is not None
        stmt = select(func.count(Job.id)).where(Job.project_id == row.project_id)
        if active_only:
            stmt = stmt.where(Job.state.in_([JobState.queued.value, JobState.running.value]))
        return int(session.scalar(stmt) or 0)


def stored_rows() -> list[Any]:
    with session_scope() as session:
        jobs = session.execute(select(Job.id, Job.state, Job.updated_at).order_by(Job.id))
        keys = session.execute(select(IdempotencyRecord.key).order_by(IdempotencyRecord.key))
        scans = session.execute(select(Scan.id).order_by(Scan.id))
        return [jobs.all(), keys.all(), scans.all()]


def assert_at_cap(r: httpx.Response, active: int, cap: int) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["type"] == PROBLEM + "too-many-active-jobs"
    assert f"has {active} queued or running jobs and may have at most {cap}" in body["detail"]
    assert (body["active_jobs"], body["max_active_jobs"]) == (active, cap)
    assert int(r.headers["retry-after"]) >= 1


@pytest.fixture
def capped(env: pytest.MonkeyPatch, sqlite_db: str) -> Iterator[TestClient]:
    configure(env, max_active_jobs_per_project=2)
    with make_client(create_app()) as client:
        yield client


def test_a_project_at_its_cap_is_refused_and_nothing_changes(capped: TestClient) -> None:
    key, other = new_key("busy"), new_key("idle")
    created = [capped.post("/v1/jobs", json=PARKED, headers=auth(key)) for _ in range(2)]
    assert [r.status_code for r in created] == [202, 202]
    before = stored_rows()
    r = capped.post("/v1/jobs", json=PARKED, headers={**auth(key), "Idempotency-Key": "k1"})
    assert_at_cap(r, active=2, cap=2)
    assert stored_rows() == before
    # Another project has its own cap; finishing a job makes room (and k1 was not spent).
    assert capped.post("/v1/jobs", json=PARKED, headers=auth(other)).status_code == 202
    job_id = created[0].json()["id"]
    assert capped.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 200
    r = capped.post("/v1/jobs", json=PARKED, headers={**auth(key), "Idempotency-Key": "k1"})
    assert r.status_code == 202 and "idempotent-replayed" not in r.headers


def test_a_scan_at_the_cap_stores_nothing(capped: TestClient, planted: dict) -> None:
    key = new_key("scans")
    corpus = capped.post(
        "/v1/corpora",
        json={"name": "web", "uri": planted["uri"], "format": "jsonl.gz"},
        headers=auth(key),
    ).json()
    skill = capped.post(
        "/v1/skills",
        json={"name": "cmp", "detector": {"kind": "keywords", "keywords": ["cmp"]}},
        headers=auth(key),
    ).json()
    for _ in range(2):
        assert capped.post("/v1/jobs", json=PARKED, headers=auth(key)).status_code == 202
    before = stored_rows()
    r = capped.post(
        "/v1/scans",
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]]},
        headers={**auth(key), "Idempotency-Key": "scan-1"},
    )
    assert_at_cap(r, active=2, cap=2)
    assert stored_rows() == before


def test_an_idempotent_replay_at_the_cap_still_replays(capped: TestClient) -> None:
    key = new_key("replay")
    headers = [{**auth(key), "Idempotency-Key": f"job-{i}"} for i in range(2)]
    first = [capped.post("/v1/jobs", json=PARKED, headers=h) for h in headers]
    assert [r.status_code for r in first] == [202, 202]
    for h, original in zip(headers, first, strict=True):
        again = capped.post("/v1/jobs", json=PARKED, headers=h)
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == original.json()["id"]
    assert_at_cap(capped.post("/v1/jobs", json=PARKED, headers=auth(key)), active=2, cap=2)
    assert count_jobs(key) == 2


@pytest.mark.parametrize("database", ["sqlite_db", "pg_db"])
def test_concurrent_submits_never_exceed_the_cap(
    env: pytest.MonkeyPatch, request: pytest.FixtureRequest, database: str
) -> None:
    request.getfixturevalue(database)
    cap, submits = 3, 12
    configure(env, max_active_jobs_per_project=cap)
    key = new_key("racing")
    statuses: list[int] = []
    start = threading.Barrier(submits)

    def submit(base_url: str) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            r = httpx.post(f"{base_url}/v1/jobs", json=PARKED, headers=auth(key), timeout=60)
            statuses.append(r.status_code)

        return run

    with run_api() as base_url:
        threads = [threading.Thread(target=submit(base_url)) for _ in range(submits)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(statuses) == [202] * cap + [429] * (submits - cap)
    assert count_jobs(key, active_only=True) == count_jobs(key) == cap
