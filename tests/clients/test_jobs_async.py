"""The async client: the same scenarios as the sync one, against the same real stack.
Each test drives one coroutine with `asyncio.run`, so no async pytest plugin is needed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from skillmix_client import AsyncSkillmix, AuthenticationError, ConflictError, NotFoundError

from tests.clients.conftest import PARKED, TIMEOUT, new_key


def test_create_wait_list_download(
    base_url: str, api_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with AsyncSkillmix(base_url=base_url, api_key=api_key, timeout=TIMEOUT) as client:
            job = await client.jobs.create(params={"seconds": 0.4, "steps": 2})
            parked = [(await client.jobs.create(queue=PARKED)).id for _ in range(4)]

            done = await client.jobs.wait(job.id, progress=True, timeout=60)
            assert done.state == "succeeded" and done.result == {"slept_seconds": 0.4, "steps": 2}
            [artifact] = await client.jobs.artifacts(job.id)
            path = await client.jobs.download_artifact(job.id, artifact.name, tmp_path / "r.json")
            assert json.loads(path.read_text()) == done.result

            listed = [j.id async for j in client.jobs.list(limit=2)]
            assert listed == [*parked[::-1], job.id]
            sizes = [len(page.data) async for page in client.jobs.list(limit=2).pages()]
            assert sizes == [2, 2, 1]

    asyncio.run(scenario())
    assert "100.0% succeeded" in capsys.readouterr().err


def test_retrieve_cancel_conflict_and_errors(base_url: str, api_key: str) -> None:
    async def scenario() -> None:
        async with AsyncSkillmix(base_url=base_url, api_key=api_key, timeout=TIMEOUT) as client:
            job = await client.jobs.create(queue=PARKED)
            assert (await client.jobs.retrieve(job.id)).state == "queued"
            assert (await client.jobs.cancel(job.id)).state == "cancelled"
            with pytest.raises(ConflictError) as conflict:
                await client.jobs.cancel(job.id)
            assert conflict.value.slug == "job-finished" and conflict.value.status == 409

            other = client.with_options(api_key=new_key(), max_retries=0)
            with pytest.raises(NotFoundError) as missing:
                await other.jobs.retrieve(job.id)
            assert missing.value.instance == f"/v1/jobs/{job.id}"

            bad = client.with_options(api_key="sk_wrong")
            with pytest.raises(AuthenticationError):
                await bad.jobs.retrieve(job.id)

    asyncio.run(scenario())
