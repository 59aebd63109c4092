"""`POST /v1/jobs/{id}/retry`: a failed or cancelled job is sent again as the same job
(attempts from 0, error cleared), anything else is a 409 saying why; another project's job
is a 404. Jobs run in process (`runner.execute`)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.db import session_scope
from service.models import Job
from service.store import jobs
from service.worker import runner
from tests.service.conftest import auth


def sleep_job(client: TestClient, key: str, **params: object) -> str:
    made = client.post("/v1/jobs", json={"kind": "sleep", "params": params}, headers=auth(key))
    assert made.status_code == 202, made.text
    return made.json()["id"]


def test_a_failed_job_is_retried_as_the_same_job(client: TestClient, key_a: str) -> None:
    job_id = sleep_job(client, key_a, fail="disk on fire")
    assert runner.execute(job_id) == "failed"
    retried = client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key_a))
    assert retried.status_code == 202, retried.text
    body = retried.json()
    assert (body["id"], body["state"], body["attempts"], body["error"]) == (
        job_id,
        "queued",
        0,
        None,
    )
    # Sent again (the embedded broker holds its message), and it runs again.
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.enqueued_at is not None
    assert runner.execute(job_id) == "failed"
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(key_a)).json()["attempts"] == 1


def test_only_failed_or_cancelled_jobs_are_retried(
    client: TestClient, key_a: str, key_b: str
) -> None:
    job_id = sleep_job(client, key_a)
    queued = client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key_a))
    assert queued.status_code == 409
    assert queued.json()["type"] == "urn:skillmix:problem:job-not-failed"
    assert runner.execute(job_id) == "succeeded"
    done = client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key_a))
    assert done.status_code == 409 and done.json()["state"] == "succeeded"
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key_b)).status_code == 404
    cancelled = sleep_job(client, key_a)
    assert client.post(f"/v1/jobs/{cancelled}/cancel", headers=auth(key_a)).status_code == 200
    again = client.post(f"/v1/jobs/{cancelled}/retry", headers=auth(key_a))
    assert again.status_code == 202 and again.json()["state"] == "queued"


def test_a_job_whose_need_failed_asks_for_that_one_first(client: TestClient, key_a: str) -> None:
    need_id = sleep_job(client, key_a, fail="no")
    with session_scope() as session:
        need = session.get(Job, need_id)
        assert need is not None
        waiter, _ = jobs.start_job(
            session,
            project_id=need.project_id,
            kind="sleep",
            params={},
            max_attempts=3,
            max_active=0,
            after=[need],
        )
        waiter_id = waiter.id
    assert runner.execute(need_id) == "failed"
    assert client.get(f"/v1/jobs/{waiter_id}", headers=auth(key_a)).json()["state"] == "failed"
    refused = client.post(f"/v1/jobs/{waiter_id}/retry", headers=auth(key_a))
    assert refused.status_code == 409
    assert refused.json()["needs"] == [need_id]
    # Retrying the need first makes the waiter retryable: it then waits for it again.
    assert client.post(f"/v1/jobs/{need_id}/retry", headers=auth(key_a)).status_code == 202
    waits = client.post(f"/v1/jobs/{waiter_id}/retry", headers=auth(key_a))
    assert waits.status_code == 202 and waits.json()["state"] == "queued"
    with session_scope() as session:
        job = session.get(Job, waiter_id)
        assert job is not None and job.enqueued_at is None  # waiting, not sent
