"""The sync client against the real API and a real worker process (embedded stack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skillmix_client import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    Skillmix,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from skillmix_client.types import Job

from tests.clients.conftest import PARKED, new_key


def test_create_wait_with_progress_and_download(
    client: Skillmix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = client.jobs.create(kind="sleep", params={"seconds": 0.6, "steps": 3})
    assert isinstance(job, Job) and job.state == "queued" and job.kind == "sleep"

    done = client.jobs.wait(job.id, progress=True, timeout=60)

    assert done.state == "succeeded" and done.is_final
    assert done.result == {"slept_seconds": 0.6, "steps": 3}
    bar = capsys.readouterr().err
    assert job.id in bar and "100.0% succeeded" in bar
    [artifact] = client.jobs.artifacts(job.id)
    assert artifact.name == "result.json" and artifact.media_type == "application/json"
    path = client.jobs.download_artifact(job.id, "result.json", tmp_path)
    assert path == tmp_path / "result.json" and path.stat().st_size == artifact.size
    assert json.loads(path.read_text()) == done.result
    assert not list(tmp_path.glob("*.part"))


def test_list_walks_all_pages(client: Skillmix) -> None:
    created = [client.jobs.create(queue=PARKED).id for _ in range(5)]

    listed = [job.id for job in client.jobs.list(limit=2)]
    pages = list(client.jobs.list(limit=2).pages())

    assert listed == created[::-1]  # newest first
    assert [len(p.data) for p in pages] == [2, 2, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [j.id for j in client.jobs.list(limit=2, after=created[2])] == created[1::-1]


def test_retrieve_and_cancel_twice_conflicts(client: Skillmix) -> None:
    job = client.jobs.create(queue=PARKED)
    assert client.jobs.retrieve(job.id).id == job.id

    cancelled = client.jobs.cancel(job.id)
    assert cancelled.state == "cancelled"
    with pytest.raises(ConflictError) as info:
        client.with_options(max_retries=0).jobs.cancel(job.id)

    err = info.value
    assert err.status == 409 and err.slug == "job-finished"
    assert err.type == "urn:skillmix:problem:job-finished"
    assert err.title == "Job already finished" and "cancelled" in (err.detail or "")
    assert err.instance == f"/v1/jobs/{job.id}/cancel" and err.body["state"] == "cancelled"
    assert client.jobs.wait(job.id, timeout=10).state == "cancelled"


def test_another_projects_job_is_not_found(client: Skillmix, base_url: str, tmp_path: Path) -> None:
    job = client.jobs.create(queue=PARKED)
    with Skillmix(base_url=base_url, api_key=new_key(), max_retries=0) as other:
        with pytest.raises(NotFoundError) as info:
            other.jobs.retrieve(job.id)
        with pytest.raises(NotFoundError):
            other.jobs.download_artifact(job.id, "result.json", tmp_path)
    assert info.value.status == 404 and info.value.slug == "not-found"
    assert job.id in str(info.value)


def test_bad_key_is_an_authentication_error(base_url: str) -> None:
    with (
        Skillmix(base_url=base_url, api_key="sk_wrong") as bad,
        pytest.raises(AuthenticationError) as info,
    ):
        list(bad.jobs.list())
    assert info.value.status == 401 and info.value.title == "Invalid API key"


def test_validation_errors_carry_the_fields(client: Skillmix) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        client.jobs.create(params={"seconds": -1})
    assert info.value.slug == "validation-error"
    assert [e["loc"] for e in info.value.errors] == [["body", "params", "seconds"]]


def test_own_idempotency_key_replays_and_rejects_another_body(client: Skillmix) -> None:
    first = client.jobs.create(queue=PARKED, idempotency_key="k-1")
    again = client.jobs.create(queue=PARKED, idempotency_key="k-1")
    assert again.id == first.id
    with pytest.raises(UnprocessableEntityError) as info:
        client.jobs.create(params={"seconds": 1}, queue=PARKED, idempotency_key="k-1")
    assert info.value.slug == "idempotency-key-reused"


def test_wait_returns_a_failed_job_and_times_out(client: Skillmix) -> None:
    failed = client.jobs.wait(client.jobs.create(params={"fail": "boom"}).id, timeout=60)
    assert failed.state == "failed" and failed.error == "RuntimeError: boom"

    parked = client.jobs.create(queue=PARKED)
    with pytest.raises(WaitTimeoutError) as info:
        client.jobs.wait(parked.id, timeout=0.5)
    assert info.value.job_id == parked.id and info.value.last.state == "queued"
