"""The database goes away for a few seconds and comes back: the API answers 503 with
Retry-After meanwhile (never 500) and recovers by itself; a task whose message arrives
while the database is down tries its claim again with backoff instead of consuming the
message, so every job finishes within seconds of the restart, not at the sweeper's re-queue
ten minutes later; and no job's work ever runs twice at once.

The database is a private PostgreSQL server per test (tests/reliability/postgres_server.py),
stopped and started again as a restart does (`pg_ctl stop -m fast`, then start).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from service import migrate
from service.api.app import create_app
from service.auth import create_key
from service.celery_app import enqueue
from service.cli.embedded import refresh_settings, run_api, start_worker
from service.db import session_scope
from service.settings import Settings, get_settings
from service.store import jobs
from service.worker.tasks import CLAIM_RETRIES, claim_retry_delay
from tests.conftest import missing
from tests.reliability.conftest import FINAL, db_job, executions, kill_group, runs_overlap
from tests.reliability.postgres_server import PostgresServer
from tests.reliability.redis_server import RedisServer
from tests.service.conftest import auth, new_key
from tests.service.stack import wait_for

OUTAGE_SECONDS = 6.0
"""Longer than a running job's lease-fenced writes keep trying (1.75 s for the progress
write, as much again for the final one), so the job running at the stop loses its attempt
and is run again (an outage shorter than that is the writes' own retries' business)."""
RUNNING = {"seconds": 6.0, "steps": 24}
QUEUED = {"seconds": 1.0, "steps": 4}


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except (FileNotFoundError, KeyError) as exc:
        _cannot_start(exc)
    try:
        server.create()
    except BaseException as exc:
        server.remove()
        if isinstance(exc, (RuntimeError, subprocess.SubprocessError, OSError)):
            _cannot_start(exc)
        raise
    try:
        yield server
    finally:
        server.remove()


def _cannot_start(exc: BaseException) -> NoReturn:
    missing(f"a private PostgreSQL server is needed: {exc}")


def use_database(env: pytest.MonkeyPatch, server: PostgresServer) -> None:
    env.setenv("SKILLMIX_DATABASE_URL", server.url())
    refresh_settings()
    migrate.upgrade(server.url())


def assert_database_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.request.method, r.request.url.path, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:skillmix:problem:database-unavailable", r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 30


def test_every_v1_operation_documents_the_503_and_its_retry_after(
    env: pytest.MonkeyPatch,
) -> None:
    doc = create_app().openapi()
    for path, ops in doc["paths"].items():
        if path.startswith("/v1/"):
            for method, op in ops.items():
                documented = op["responses"].get("503", {})
                assert "Retry-After" in documented.get("headers", {}), (method, path)


def test_a_task_that_cannot_claim_tries_again_for_minutes_before_the_sweeper_would() -> None:
    delays = [claim_retry_delay(n) for n in range(CLAIM_RETRIES)]
    assert delays[:6] == [1, 2, 4, 8, 16, 30] and max(delays) == 30
    requeue = Settings.model_fields["requeue_queued_after_seconds"].default
    assert 120 <= sum(delays) < requeue


@pytest.mark.timeout(120)
def test_the_api_answers_503_while_the_database_is_down_and_recovers_at_once(
    env: pytest.MonkeyPatch, postgres: PostgresServer
) -> None:
    # A key verified before the outage stays cached: its requests fail in the route. A key
    # first seen during the outage fails in the authenticating dependency.
    env.setenv("SKILLMIX_AUTH_CACHE_SECONDS", "300")
    use_database(env, postgres)
    seen, unseen = new_key("acme"), new_key("acme")
    sleep = {"kind": "sleep", "params": {"seconds": 0}}
    with run_api() as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        created = http.post("/v1/jobs", headers=auth(seen), json=sleep)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert http.get("/v1/jobs", headers=auth(seen)).status_code == 200

        postgres.stop()
        for key in (seen, unseen):
            assert_database_unavailable(http.get("/v1/jobs", headers=auth(key)))
            assert_database_unavailable(http.get(f"/v1/jobs/{job_id}", headers=auth(key)))
            assert_database_unavailable(http.post("/v1/jobs", headers=auth(key), json=sleep))
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"].startswith("error: "), ready.text
        assert ready.json()["checks"]["broker"].startswith("ok"), ready.text

        postgres.start()
        # The pool's connections from before the restart are dead: the very first request
        # after it must not be handed one.
        first = http.get("/v1/jobs", headers=auth(seen))
        assert first.status_code == 200, first.text
        assert job_id in [job["id"] for job in first.json()["data"]]
        assert http.get(f"/v1/jobs/{job_id}", headers=auth(unseen)).status_code == 200
        again = http.post("/v1/jobs", headers=auth(unseen), json=sleep)
        assert again.status_code == 202, again.text
        assert http.get("/readyz").status_code == 200


def add_job(project_id: str, params: dict[str, float]) -> str:
    """A queued sleep job, recorded as sent (its message is sent separately)."""
    with session_scope() as session:
        job = jobs.create_job(
            session,
            project_id=project_id,
            kind="sleep",
            queue="curation",
            params=params,
            max_attempts=get_settings().max_attempts,
        )
        jobs.mark_enqueued(session, job.id)
        return job.id


@pytest.mark.timeout(180)
def test_jobs_running_and_arriving_during_a_database_restart_all_finish_soon_after(
    env: pytest.MonkeyPatch, postgres: PostgresServer, broker: RedisServer, tmp_path: Path
) -> None:
    use_database(env, postgres)
    env.setenv("SKILLMIX_BROKER_URL", broker.url())
    # A lost attempt's lease runs out in 3 s, and the sweeper looks every second; but it
    # re-queues a queued job only after an hour: it cannot be what saves the queued job.
    env.setenv("SKILLMIX_JOB_LEASE_SECONDS", "3")
    env.setenv("SKILLMIX_SWEEP_INTERVAL_SECONDS", "1")
    env.setenv("SKILLMIX_REQUEUE_QUEUED_AFTER_SECONDS", "3600")
    # Longer than any countdown of a claim's retries: Redis would otherwise deliver a
    # waiting retry's message a second time (harmless, but noise here).
    env.setenv("SKILLMIX_VISIBILITY_TIMEOUT_SECONDS", "60")
    refresh_settings()
    with session_scope() as session:
        project, _ = create_key(session, "acme")
        project_id = project.id
    log = tmp_path / "worker.log"
    worker = start_worker("curation", concurrency=2, log_path=log)
    try:

        def ready() -> bool:
            assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
            return log.exists() and " ready." in log.read_text(errors="replace")

        wait_for(ready, 90, "the worker to be ready")
        running = add_job(project_id, RUNNING)
        enqueue(running, "curation")

        def under_way() -> bool:
            job = db_job(running)
            assert job["state"] not in FINAL, job
            return job["state"] == "running" and 0.1 <= job["progress"] <= 0.5

        wait_for(under_way, 60, "the first job to be under way")
        queued = add_job(project_id, QUEUED)
        postgres.stop()
        enqueue(queued, "curation")  # a free pool process takes it at once
        time.sleep(OUTAGE_SECONDS)
        postgres.start()

        ids = [running, queued]
        wait_for(lambda: all(db_job(i)["state"] in FINAL for i in ids), 60, "both jobs to end")
        done = {i: db_job(i) for i in ids}
        assert [done[i]["state"] for i in ids] == ["succeeded", "succeeded"], done
        text = log.read_text(errors="replace")
        for job_id in ids:
            records = executions(job_id)
            assert runs_overlap(records) == [], (job_id, records)
            assert [r["event"] for r in records].count("end") == 1, (job_id, records)
            attempts = re.findall(rf"job {job_id} attempt (\d+):", text)
            assert attempts == [str(n + 1) for n in range(done[job_id]["attempts"])], attempts
        # The queued job was claimed once, by a task that had tried again meanwhile.
        assert done[queued]["attempts"] == 1, done
        assert f"cannot claim job {queued}" in text
    finally:
        kill_group(worker)
        print(log.read_text(errors="replace")[-6000:] if log.exists() else "(no worker log)")
        print(postgres.log_tail())
