"""Jobs run by separate `skillmix worker` processes: on PostgreSQL + Redis (the production
shape) and on the embedded default. A SIGKILLed worker's job runs again within the lease
time and the attempt cap ends a job that keeps losing its worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.cli.embedded import refresh_settings, run_api
from tests.service.conftest import auth, new_key
from tests.service.stack import kill, stop_process, wait_final, wait_for, worker

FAST_RECOVERY = {
    "SKILLMIX_JOB_LEASE_SECONDS": "2",
    "SKILLMIX_SWEEP_INTERVAL_SECONDS": "1",
    "SKILLMIX_VISIBILITY_TIMEOUT_SECONDS": "5",
}


@pytest.fixture
def prod_client(pg_db: str, redis_url: str, env: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    for k, v in FAST_RECOVERY.items():
        env.setenv(k, v)
    refresh_settings()
    with (
        run_api() as base_url,
        httpx.Client(base_url=base_url, timeout=10, headers=auth(new_key("acme"))) as client,
    ):
        yield client


def submit(client: httpx.Client, seconds: float, steps: int) -> str:
    r = client.post(
        "/v1/jobs", json={"kind": "sleep", "params": {"seconds": seconds, "steps": steps}}
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_separate_worker_runs_a_job_on_postgres_and_redis(
    prod_client: httpx.Client, tmp_path: Path
) -> None:
    w = worker(tmp_path / "w.log")
    try:
        job = wait_final(prod_client, submit(prod_client, 0.5, 2), timeout=60)
    finally:
        stop_process(w)
    assert job["state"] == "succeeded", (tmp_path / "w.log").read_text()[-3000:]
    assert job["attempts"] == 1 and job["result"] == {"slept_seconds": 0.5, "steps": 2}
    art = prod_client.get(job["artifacts"][0]["url"])
    assert art.status_code == 200 and art.json() == job["result"]


def test_sigkilled_worker_job_runs_again_and_succeeds(
    prod_client: httpx.Client, tmp_path: Path
) -> None:
    job_id = submit(prod_client, 6, 12)
    first = worker(tmp_path / "w1.log")
    try:  # never leave a worker behind: it would take other test sessions' messages
        wait_for(
            lambda: prod_client.get(f"/v1/jobs/{job_id}").json()["progress"]["fraction"] > 0,
            60,
            "the job to make progress",
        )
    finally:
        kill(first)
    second = worker(tmp_path / "w2.log")
    try:
        job = wait_final(prod_client, job_id, timeout=90)
    finally:
        stop_process(second)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2


def test_a_job_that_keeps_losing_its_worker_fails_at_the_cap(
    prod_client: httpx.Client, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_MAX_ATTEMPTS", "2")
    refresh_settings()
    job_id = submit(prod_client, 30, 60)
    for attempt in (1, 2):
        w = worker(tmp_path / f"w{attempt}.log")
        try:
            wait_for(
                lambda a=attempt: (
                    prod_client.get(f"/v1/jobs/{job_id}").json()["attempts"] == a
                    and prod_client.get(f"/v1/jobs/{job_id}").json()["progress"]["fraction"] > 0
                ),
                60,
                f"attempt {attempt} to run",
            )
        finally:
            kill(w)
    last = worker(tmp_path / "w3.log")
    try:
        job = wait_final(prod_client, job_id, timeout=60)
    finally:
        stop_process(last)
    assert job["state"] == "failed" and job["attempts"] == 2
    assert "lost 2 time(s) (max_attempts=2)" in job["error"]


def test_embedded_worker_runs_a_job_with_the_filesystem_broker(
    sqlite_db: str, tmp_path: Path
) -> None:
    w = worker(tmp_path / "w.log")
    try:
        with (
            run_api() as base_url,
            httpx.Client(base_url=base_url, timeout=10, headers=auth(new_key("e"))) as client,
        ):
            job = wait_final(client, submit(client, 0.2, 2), timeout=60)
    finally:
        stop_process(w)
    assert job["state"] == "succeeded", (tmp_path / "w.log").read_text()[-3000:]
